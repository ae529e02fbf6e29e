//! Work under an `AccessExclusiveLock` on the index: the one rebuild of an
//! index created on an empty or small table (`imgsim_forest::rebuild`: a
//! tree space learned from the rows loaded since, new trees, the old pages
//! given back), started by the insert that makes it due or, failing that,
//! by VACUUM; and the compaction at the end of VACUUM of an index that
//! updates or deletes have bloated (`imgsim_forest::compact`: live records
//! moved into freed slots, new trees, the relation truncated).
//!
//! Both run only under that lock, taken without waiting: no scan, insert or
//! VACUUM can then be using the index, so pages can be moved and reused at
//! once, and a hot standby replays the lock too (its queries on the index
//! wait for or are cancelled by the replay, as for a relation truncation).
//! If the lock is not free (the index is in use), a later insert or VACUUM
//! tries again; a compaction also gives up, before its switch, as soon as
//! another session waits for the lock. So an index in constant use is never
//! compacted this way, and `REINDEX CONCURRENTLY` is what gives its space
//! back. The lock is released
//! as soon as the work is done, not at commit, since the work does not
//! depend on the transaction's outcome.

use std::time::Instant;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::build::{block_signals, build_threads};
use super::options::COMPACTION_STEP_DELAY;
use super::page::{Logging, PgStore};
use super::relation::{raise_corruption, relation_name};

/// Runs `work` on the index's pages if it can be locked exclusively at once.
///
/// # Safety
/// `index` must be an open annoy index relation locked by this transaction.
unsafe fn exclusively(index: pg_sys::Relation, work: impl FnOnce(&PgStore)) {
    // SAFETY (whole function): the relation is open (caller contract).
    unsafe {
        // This backend may itself hold the index open elsewhere (an INSERT
        // … SELECT that scans it, an open cursor): a lock does not guard
        // against our own scans, so leave their pages alone.
        if (*index).rd_refcnt != 1 {
            return;
        }
        let exclusive = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
        if !pg_sys::ConditionalLockRelation(index, exclusive) {
            return;
        }
        // Nobody else can extend the index while we hold the lock.
        let store =
            PgStore::with_fixed_size(index, pg_sys::ForkNumber::MAIN_FORKNUM, Logging::Generic);
        work(&store);
        drop(store);
        pg_sys::UnlockRelation(index, exclusive);
    }
}

/// Rebuilds the index if it is due and can be locked exclusively at once.
///
/// # Safety
/// `index` must be an open annoy index relation locked by this transaction.
pub unsafe fn try_rebuild(index: pg_sys::Relation) {
    // SAFETY: the caller's contract.
    unsafe {
        exclusively(index, |store| {
            let started = Instant::now();
            let rebuilt =
                imgsim_forest::rebuild(store, build_threads(), block_signals, &mut |_, _, _| {
                    pg_sys::check_for_interrupts!();
                });
            match rebuilt {
                Ok(Some(stats)) => {
                    pg_sys::IndexFreeSpaceMapVacuum(index);
                    log!(
                        "annoy index \"{}\" rebuilt its trees from {} rows in {:.1} s ({} pages freed for reuse)",
                        relation_name(index),
                        stats.items,
                        started.elapsed().as_secs_f64(),
                        stats.freed_pages
                    );
                }
                Ok(None) => {}
                Err(corruption) => raise_corruption(&relation_name(index), corruption),
            }
        })
    }
}

/// Compacts the index if it is due and can be locked exclusively at once.
///
/// # Safety
/// `index` must be an open annoy index relation locked by this transaction.
pub unsafe fn try_compact(index: pg_sys::Relation) {
    // SAFETY: the caller's contract.
    unsafe {
        exclusively(index, |store| {
            let started = Instant::now();
            let exclusive = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
            // Give up (before the switch) once a session queues behind our
            // lock, as VACUUM's truncation of a table does: every query of
            // the table waits for it (the planner locks all its indexes).
            let compacted = imgsim_forest::compact(
                store,
                build_threads(),
                block_signals,
                &mut |_, _, _| {
                    pg_sys::check_for_interrupts!();
                    let pause = COMPACTION_STEP_DELAY.get();
                    if pause > 0 {
                        pg_sys::pg_usleep(i64::from(pause) * 1000);
                    }
                },
                &mut || !pg_sys::LockHasWaitersRelation(index, exclusive),
            );
            match compacted {
                Ok(Some(stats)) if !stats.finished => {
                    log!(
                        "annoy index \"{}\": compaction given up after {:.1} s, another session waits for the index (a later VACUUM tries again)",
                        relation_name(index),
                        started.elapsed().as_secs_f64()
                    );
                }
                Ok(Some(stats)) => {
                    pg_sys::IndexFreeSpaceMapVacuum(index);
                    log!(
                        "annoy index \"{}\" compacted from {} to {} pages in {:.1} s ({} rows, {} moved, {} pages relocated)",
                        relation_name(index),
                        stats.pages_before,
                        stats.pages_after,
                        started.elapsed().as_secs_f64(),
                        stats.items,
                        stats.moved,
                        stats.relocated_pages
                    );
                }
                Ok(None) => {}
                Err(corruption) => raise_corruption(&relation_name(index), corruption),
            }
        })
    }
}
