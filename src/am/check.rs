//! `annoy_index_check(regclass)`: amcheck-like verification of an index.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgRelation, PgSqlErrorCode};

use super::page::{Logging, PgStore};
use super::relation::{raise_corruption, relation_name};
use crate::error::UserError;

/// Verifies page kinds and magic, the metapage, the free list, and that
/// every tree reaches every live item exactly once. Returns a summary or
/// raises XX002.
#[pg_extern(strict, parallel_safe)]
#[allow(clippy::type_complexity)]
fn annoy_index_check(
    index: PgRelation,
) -> TableIterator<
    'static,
    (
        name!(items, i64),
        name!(live_items, i64),
        name!(deleted_items, i64),
        name!(free_items, i64),
        name!(incomplete_items, i64),
        name!(unused_pages, i32),
        name!(trees, i32),
        name!(item_pages, i32),
        name!(split_pages, i32),
        name!(leaf_pages, i32),
        name!(leaf_entries, i64),
        name!(max_depth, i32),
    ),
> {
    // SAFETY: the relation is opened and closed here, under AccessShareLock.
    let report = unsafe {
        let rel = pg_sys::relation_open(index.oid(), pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let name = relation_name(rel);
        let annoy = pg_sys::get_index_am_oid(c"annoy".as_ptr(), false);
        if (*(*rel).rd_rel).relkind != pg_sys::RELKIND_INDEX as i8 || (*(*rel).rd_rel).relam != annoy {
            pg_sys::relation_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            UserError::new(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, format!("\"{name}\" is not an annoy index"))
                .raise();
        }
        let store = PgStore::new(rel, pg_sys::ForkNumber::MAIN_FORKNUM, Logging::Generic);
        let report = imgsim_forest::check(&store).unwrap_or_else(|c| raise_corruption(&name, c));
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        report
    };
    TableIterator::once((
        report.items as i64,
        report.live_items as i64,
        report.deleted_items as i64,
        report.free_items as i64,
        report.incomplete_items as i64,
        report.unused_pages as i32,
        report.trees as i32,
        report.item_pages as i32,
        report.split_pages as i32,
        report.leaf_pages as i32,
        report.leaf_entries as i64,
        report.max_depth as i32,
    ))
}
