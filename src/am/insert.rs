//! `aminsert`: a new row is descended into every tree and appended to its
//! leaf (a full leaf splits); every page change is one GenericXLog record.
//! The insert that makes an index created on few rows due for its rebuild
//! tries it ([`super::rebuild`]).

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::page::{Logging, PgStore};
use super::rebuild::try_rebuild;
use super::relation::{raise_corruption, relation_name, tid_from_item_pointer};
use crate::vector::VectorRef;

#[pg_guard]
#[allow(clippy::too_many_arguments)] // the signature is Postgres'
pub unsafe extern "C-unwind" fn aminsert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    heap_tid: pg_sys::ItemPointer,
    _heap: pg_sys::Relation,
    _check_unique: pg_sys::IndexUniqueCheck::Type,
    _index_unchanged: bool,
    _index_info: *mut pg_sys::IndexInfo,
) -> bool {
    // SAFETY: Postgres passes the open index, one key column and the heap TID.
    unsafe {
        if *isnull {
            return false; // NULL vectors are not indexed
        }
        let vector = VectorRef::from_datum(*values);
        let store = PgStore::new(index, pg_sys::ForkNumber::MAIN_FORKNUM, Logging::Generic);
        match imgsim_forest::insert(&store, tid_from_item_pointer(&*heap_tid), vector.as_slice()) {
            Ok(inserted) if inserted.rebuild_due => {
                drop(store);
                try_rebuild(index);
            }
            Ok(_) => {}
            Err(corruption) => raise_corruption(&relation_name(index), corruption),
        }
        false
    }
}
