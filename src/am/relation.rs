//! Helpers the index phases share: the index's metric, its name, TID
//! conversion, the corruption error, and the scan's snapshot check.

use std::ffi::CStr;

use imgsim_forest::{Corruption, Metric, Tid};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};

use crate::error::UserError;

/// The metric an index orders by: its opclass's support function 1 is one of
/// the `annoy_*_metric(internal)` functions of sql/finalize.sql, which return
/// the metric's number.
///
/// # Safety
/// `index` must be an open annoy index relation.
pub unsafe fn index_metric(index: pg_sys::Relation) -> Metric {
    let unsupported = || -> ! {
        UserError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "support function 1 of the operator class of annoy index \"{}\" is not an annoy metric function",
                // SAFETY: the caller's contract.
                unsafe { relation_name(index) }
            ),
        )
        .hint("Use the vector2048_l2_ops, vector2048_cosine_ops or vector2048_ip_ops operator class.")
        .raise()
    };
    // SAFETY: an annoy index has one key column; the function is called only
    // once its signature is known to be (internal) → int4, the signature of
    // the metric functions, which ignore their argument.
    let number = unsafe {
        let proc = pg_sys::index_getprocid(index, 1, 1);
        if proc == pg_sys::InvalidOid {
            unsupported();
        }
        let mut arg_types: *mut pg_sys::Oid = std::ptr::null_mut();
        let mut nargs = 0;
        let returns = pg_sys::get_func_signature(proc, &mut arg_types, &mut nargs);
        if returns != pg_sys::INT4OID || nargs != 1 || *arg_types != pg_sys::INTERNALOID {
            unsupported();
        }
        let datum =
            pg_sys::OidFunctionCall1Coll(proc, pg_sys::InvalidOid, pg_sys::Datum::from(0usize));
        datum.value() as i32
    };
    u32::try_from(number)
        .ok()
        .and_then(Metric::from_u32)
        .unwrap_or_else(|| unsupported())
}

/// Support function 1 of `vector2048_l2_ops`.
#[pg_extern(immutable, strict, parallel_safe)]
fn annoy_l2_metric(_unused: pgrx::Internal) -> i32 {
    Metric::L2 as i32
}

/// Support function 1 of `vector2048_cosine_ops`.
#[pg_extern(immutable, strict, parallel_safe)]
fn annoy_cosine_metric(_unused: pgrx::Internal) -> i32 {
    Metric::Cosine as i32
}

/// Support function 1 of `vector2048_ip_ops`.
#[pg_extern(immutable, strict, parallel_safe)]
fn annoy_inner_product_metric(_unused: pgrx::Internal) -> i32 {
    Metric::InnerProduct as i32
}

pub fn tid_from_item_pointer(tid: &pg_sys::ItemPointerData) -> Tid {
    let (block, offset) = pgrx::itemptr::item_pointer_get_both(*tid);
    Tid { block, offset }
}

pub fn item_pointer_from_tid(tid: Tid, out: &mut pg_sys::ItemPointerData) {
    pgrx::itemptr::item_pointer_set_all(out, tid.block, tid.offset);
}

/// A broken on-disk invariant, or an index of another on-disk format: the
/// index must be rebuilt.
pub fn raise_corruption(index_name: &str, corruption: Corruption) -> ! {
    if let Some(version) = corruption.old_format {
        UserError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("annoy index \"{index_name}\" has on-disk format version {version}, which this version of imgsim does not read"),
        )
        .detail(corruption.to_string())
        .hint("REINDEX the index to rebuild it in the current format.")
        .raise()
    }
    UserError::new(
        PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
        format!("annoy index \"{index_name}\" is corrupted: {corruption}"),
    )
    .hint("REINDEX the index.")
    .raise()
}

/// # Safety
/// `rel` must be an open relation.
pub unsafe fn relation_name(rel: pg_sys::Relation) -> String {
    // SAFETY: rd_rel is valid for an open relation.
    unsafe {
        CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// Refuses a scan under a snapshot that is not MVCC (as pgvector's
/// hnswscan.c does). A scan keeps the TIDs and item locations it has
/// gathered across `amgettuple` calls without holding pins, which is safe
/// only because an MVCC snapshot ignores a heap tuple that VACUUM removed
/// and an insert then reused the slot of; a non-MVCC snapshot (SnapshotAny,
/// SnapshotDirty) would return such a row.
///
/// # Safety
/// `scan` must be a scan descriptor that `index_beginscan` set up.
pub unsafe fn refuse_non_mvcc_snapshot(scan: pg_sys::IndexScanDesc) {
    // SAFETY: index_beginscan sets xs_snapshot before the first rescan.
    let snapshot_type = unsafe { (*(*scan).xs_snapshot).snapshot_type };
    // IsMVCCSnapshot() of utils/snapshot.h (a macro, so not in the bindings).
    if snapshot_type != pg_sys::SnapshotType::SNAPSHOT_MVCC
        && snapshot_type != pg_sys::SnapshotType::SNAPSHOT_HISTORIC_MVCC
    {
        UserError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "annoy index scans need an MVCC snapshot",
        )
        .detail("The scan keeps heap TIDs across calls without pins, which only an MVCC snapshot makes safe.")
        .raise();
    }
}
