//! The `annoy` index access method: a forest of random-projection trees
//! (Spotify's Annoy design) stored in Postgres pages.
//!
//! The algorithms live in the Postgres-free `imgsim-forest` crate; this module
//! is the thin glue: one file per phase, each callback a `#[pg_guard]`
//! shim over a safe `*_internal` function.

mod build;
mod check;
mod cost;
mod insert;
pub mod options;
mod page;
mod scan;
mod vacuum;

use std::ffi::CStr;

use imgsim_forest::{Corruption, Metric, Tid};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgBox, PgSqlErrorCode};

use crate::error::UserError;

#[pg_extern(sql = "
CREATE FUNCTION annoy_handler(internal) RETURNS index_am_handler
    PARALLEL SAFE IMMUTABLE STRICT LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
")]
fn annoy_handler(_fcinfo: pg_sys::FunctionCallInfo) -> PgBox<pg_sys::IndexAmRoutine> {
    // SAFETY: alloc_node zeroes the struct and sets its node tag.
    let mut am = unsafe { PgBox::<pg_sys::IndexAmRoutine>::alloc_node(pg_sys::NodeTag::T_IndexAmRoutine) };
    am.amstrategies = 0;
    am.amsupport = 1;
    am.amoptsprocnum = 0;
    am.amcanorder = false;
    am.amcanorderbyop = true;
    am.amcanbackward = false;
    am.amcanunique = false;
    am.amcanmulticol = false;
    am.amoptionalkey = true;
    am.amsearcharray = false;
    am.amsearchnulls = false;
    am.amstorage = false;
    am.amclusterable = false;
    am.ampredlocks = false;
    am.amcanparallel = false;
    am.amcaninclude = false;
    am.amusemaintenanceworkmem = false;
    am.amparallelvacuumoptions = pg_sys::VACUUM_OPTION_NO_PARALLEL as u8;
    am.amkeytype = pg_sys::InvalidOid;

    am.ambuild = Some(build::ambuild);
    am.ambuildempty = Some(build::ambuildempty);
    am.aminsert = Some(insert::aminsert);
    am.ambulkdelete = Some(vacuum::ambulkdelete);
    am.amvacuumcleanup = Some(vacuum::amvacuumcleanup);
    am.amcostestimate = Some(cost::amcostestimate);
    am.amoptions = Some(options::amoptions);
    am.ambuildphasename = Some(build::ambuildphasename);
    am.amvalidate = Some(amvalidate);
    am.ambeginscan = Some(scan::ambeginscan);
    am.amrescan = Some(scan::amrescan);
    am.amgettuple = Some(scan::amgettuple);
    am.amendscan = Some(scan::amendscan);
    am.into_pg_boxed()
}

/// The opclasses are created by our own SQL script; nothing to validate.
#[pg_guard]
unsafe extern "C-unwind" fn amvalidate(_opclass: pg_sys::Oid) -> bool {
    true
}

/// The metric an index orders by, from its opclass's support function 1
/// (the distance function of the opclass's operator).
///
/// # Safety
/// `index` must be an open annoy index relation.
unsafe fn index_metric(index: pg_sys::Relation) -> Metric {
    // SAFETY: an annoy index has one key column and support function 1.
    let name = unsafe {
        let proc = pg_sys::index_getprocid(index, 1, 1);
        let name = pg_sys::get_func_name(proc);
        if name.is_null() {
            error!("annoy: support function 1 of the index's opclass is missing");
        }
        CStr::from_ptr(name).to_string_lossy().into_owned()
    };
    match name.as_str() {
        "l2_distance" => Metric::L2,
        "cosine_distance" => Metric::Cosine,
        "vector2048_negative_inner_product" => Metric::InnerProduct,
        other => UserError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("annoy does not support the distance function {other}"),
        )
        .hint("Use the vector2048_l2_ops, vector2048_cosine_ops or vector2048_ip_ops operator class.")
        .raise(),
    }
}

fn tid_from_item_pointer(tid: &pg_sys::ItemPointerData) -> Tid {
    let (block, offset) = pgrx::itemptr::item_pointer_get_both(*tid);
    Tid { block, offset }
}

fn item_pointer_from_tid(tid: Tid, out: &mut pg_sys::ItemPointerData) {
    pgrx::itemptr::item_pointer_set_all(out, tid.block, tid.offset);
}

/// A broken on-disk invariant, or an index of another on-disk format: the
/// index must be rebuilt.
fn raise_corruption(index_name: &str, corruption: Corruption) -> ! {
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
unsafe fn relation_name(rel: pg_sys::Relation) -> String {
    // SAFETY: rd_rel is valid for an open relation.
    unsafe { CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned() }
}
