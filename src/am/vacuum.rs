//! VACUUM: `ambulkdelete` drops dead heap TIDs from every tree and marks
//! their items deleted (the core reuses the space); `amvacuumcleanup`
//! reports statistics, tries the rebuild of an index created on few rows
//! that its inserts could not do, and compacts an index that updates and
//! deletes have bloated ([`super::rebuild`]).

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgBox;

use super::page::{Logging, PgStore};
use super::rebuild::{try_compact, try_rebuild};
use super::relation::{item_pointer_from_tid, raise_corruption, relation_name};
use imgsim_forest::PageStore;

fn stats_or_new(stats: *mut pg_sys::IndexBulkDeleteResult) -> *mut pg_sys::IndexBulkDeleteResult {
    if stats.is_null() {
        // SAFETY: a zeroed palloc'd result, as Postgres expects.
        unsafe { PgBox::<pg_sys::IndexBulkDeleteResult>::alloc0() }.into_pg()
    } else {
        stats
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambulkdelete(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
    callback: pg_sys::IndexBulkDeleteCallback,
    callback_state: *mut std::ffi::c_void,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: Postgres passes valid vacuum info and a callback for heap TIDs.
    unsafe {
        let index = (*info).index;
        let stats = stats_or_new(stats);
        let callback = callback.expect("ambulkdelete without a callback");
        let store = PgStore::new(index, pg_sys::ForkNumber::MAIN_FORKNUM, Logging::Generic);
        let mut item_pointer = pg_sys::ItemPointerData::default();
        let mut is_dead = |tid| {
            item_pointer_from_tid(tid, &mut item_pointer);
            callback(&mut item_pointer, callback_state)
        };
        match imgsim_forest::bulk_delete(&store, &mut is_dead) {
            Ok(deleted) => {
                (*stats).tuples_removed += deleted.deleted as f64;
                (*stats).num_index_tuples = deleted.live as f64;
                (*stats).num_pages = store.nblocks();
            }
            Err(corruption) => raise_corruption(&relation_name(index), corruption),
        }
        stats
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amvacuumcleanup(
    info: *mut pg_sys::IndexVacuumInfo,
    stats: *mut pg_sys::IndexBulkDeleteResult,
) -> *mut pg_sys::IndexBulkDeleteResult {
    // SAFETY: Postgres passes valid vacuum info.
    unsafe {
        if (*info).analyze_only {
            return stats;
        }
        let index = (*info).index;
        let store = PgStore::new(index, pg_sys::ForkNumber::MAIN_FORKNUM, Logging::Generic);
        // An unreadable metapage is reported by scans, inserts, the bulk
        // delete and annoy_index_check; the cleanup itself need not fail.
        if let Ok(true) = imgsim_forest::rebuild::wants_rebuild(&store) {
            try_rebuild(index);
        }
        if let Ok(true) = imgsim_forest::compact::wants_compaction(&store) {
            try_compact(index);
        }
        if stats.is_null() {
            // No bulk delete ran: report the heap's count as an estimate.
            let stats = stats_or_new(stats);
            (*stats).num_index_tuples = (*info).num_heap_tuples;
            (*stats).estimated_count = (*info).estimated_count;
            (*stats).num_pages = store.nblocks();
            return stats;
        }
        (*stats).num_pages = store.nblocks();
        stats
    }
}
