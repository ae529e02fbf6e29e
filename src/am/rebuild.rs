//! The one rebuild of an index created on an empty or small table
//! (`imgsim_forest::rebuild`: a tree space learned from the rows loaded
//! since, new trees, the old pages given back), started by the insert that
//! makes it due or, failing that, by VACUUM.
//!
//! It runs only under an `AccessExclusiveLock` on the index taken without
//! waiting: no scan, insert or VACUUM can then be using the index, so the old
//! pages can be reused at once, and a hot standby replays the lock too (its
//! queries on the index wait for or are cancelled by the replay, as for a
//! relation truncation). If the lock is not free (the index is in use), a
//! later insert or VACUUM tries again; the lock is released as soon as the
//! rebuild is done, not at commit, since the rebuild does not depend on the
//! transaction's outcome.

use std::time::Instant;

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::build::{block_signals, build_threads};
use super::page::{Logging, PgStore};
use super::relation::{raise_corruption, relation_name};

/// Rebuilds the index if it is due and can be locked exclusively at once.
///
/// # Safety
/// `index` must be an open annoy index relation locked by this transaction.
pub unsafe fn try_rebuild(index: pg_sys::Relation) {
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
        let started = Instant::now();
        let rebuilt =
            imgsim_forest::rebuild(&store, build_threads(), block_signals, &mut |_, _, _| {
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
        drop(store);
        pg_sys::UnlockRelation(index, exclusive);
    }
}
