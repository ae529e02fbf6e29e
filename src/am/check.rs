//! `annoy_index_check(regclass, nowait)`: amcheck-like verification of an
//! index, consistent while the application writes.
//!
//! The check walks chains (items, free list, trees) that inserts extend and
//! VACUUM rewrites, so it must see the index at rest: like amcheck's
//! `bt_index_parent_check` it holds ShareLock on the table and the index
//! for its duration. ShareLock conflicts with the RowExclusiveLock of
//! INSERT/UPDATE/DELETE and with VACUUM's ShareUpdateExclusiveLock: the
//! check first waits for the writers that hold them to commit, and writes
//! that start meanwhile wait for the check. Queries (AccessShareLock) are
//! not blocked. With `nowait` it does not queue: if a writer holds the table
//! it fails at once with 55P03, so a monitoring job never stalls writes
//! behind a long transaction.
//!
//! In recovery (a hot standby) no lock stops WAL replay, and only
//! AccessShareLock may be taken. There the check notes the replay position
//! before and after each pass, and reports corruption only when it is found
//! by a pass during which nothing was replayed; if replay moved on during
//! every one of [`STANDBY_PASSES`] passes it gives up with 55000.

use imgsim_forest::CheckReport;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgRelation, PgSqlErrorCode};

use super::page::{Logging, PgStore};
use super::relation::{raise_corruption, relation_name};
use crate::error::UserError;

/// Passes a check on a standby makes while WAL replay changes the index.
const STANDBY_PASSES: usize = 3;

/// Verifies page kinds and magic, the metapage, the free list, and that
/// every tree reaches every live item exactly once. Returns a summary or
/// raises XX002.
#[pg_extern(strict, parallel_restricted)]
#[allow(clippy::type_complexity)]
fn annoy_index_check(
    index: PgRelation,
    nowait: default!(bool, false),
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
        name!(free_pages, i32),
    ),
> {
    // SAFETY: the index is opened and closed here.
    let report = unsafe { check_index(index.oid(), nowait) };
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
        report.free_pages as i32,
    ))
}

/// # Safety
/// Must run in a transaction; `index_oid` is any relation's OID.
unsafe fn check_index(index_oid: pg_sys::Oid, nowait: bool) -> CheckReport {
    let access_share = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    let share = pg_sys::ShareLock as pg_sys::LOCKMODE;
    // SAFETY: the relation stays open (AccessShareLock) until the end; the
    // ShareLocks are taken heap first, then index, as writers take theirs.
    unsafe {
        let rel = pg_sys::relation_open(index_oid, access_share);
        let name = relation_name(rel);
        let annoy = pg_sys::get_index_am_oid(c"annoy".as_ptr(), false);
        if (*(*rel).rd_rel).relkind != pg_sys::RELKIND_INDEX as i8
            || (*(*rel).rd_rel).relam != annoy
        {
            pg_sys::relation_close(rel, access_share);
            UserError::new(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{name}\" is not an annoy index"),
            )
            .raise();
        }
        let heap = pg_sys::IndexGetRelation(index_oid, false);
        // The rule of LOCK TABLE … IN SHARE MODE: the check may hold off
        // writers only for a role that could lock the table that way.
        let lock_rights = pg_sys::ACL_UPDATE | pg_sys::ACL_DELETE | pg_sys::ACL_TRUNCATE;
        if pg_sys::pg_class_aclcheck(heap, pg_sys::GetUserId(), lock_rights)
            != pg_sys::AclResult::ACLCHECK_OK
        {
            UserError::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied to check annoy index \"{name}\""),
            )
            .detail("The check locks the table against writes, which needs UPDATE, DELETE or TRUNCATE on it.")
            .raise();
        }
        let report = if pg_sys::RecoveryInProgress() {
            check_during_recovery(rel, &name)
        } else {
            if nowait && !pg_sys::ConditionalLockRelationOid(heap, share) {
                UserError::new(
                    PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                    format!("annoy index \"{name}\" is busy: its table has writers"),
                )
                .hint("Retry later, or check without nowait: it waits for the writers, and new writes wait for it.")
                .raise();
            } else if !nowait {
                pg_sys::LockRelationOid(heap, share);
            }
            pg_sys::LockRelationOid(index_oid, share);
            let store =
                PgStore::with_fixed_size(rel, pg_sys::ForkNumber::MAIN_FORKNUM, Logging::Generic);
            let report =
                imgsim_forest::check(&store).unwrap_or_else(|c| raise_corruption(&name, c));
            // Writers may go on at once; nothing read is used after this.
            pg_sys::UnlockRelationOid(index_oid, share);
            pg_sys::UnlockRelationOid(heap, share);
            report
        };
        pg_sys::relation_close(rel, access_share);
        report
    }
}

/// See the module docs.
///
/// # Safety
/// `rel` is an open annoy index and recovery is in progress.
unsafe fn check_during_recovery(rel: pg_sys::Relation, name: &str) -> CheckReport {
    // SAFETY: the caller's contract.
    let store = unsafe { PgStore::new(rel, pg_sys::ForkNumber::MAIN_FORKNUM, Logging::Generic) };
    // SAFETY: reads the replay position from shared memory.
    let replayed = || unsafe { pg_sys::GetXLogReplayRecPtr(std::ptr::null_mut()) };
    for _ in 0..STANDBY_PASSES {
        let before = replayed();
        match imgsim_forest::check(&store) {
            Ok(report) => return report,
            Err(corruption) if replayed() == before => raise_corruption(name, corruption),
            Err(_) => continue,
        }
    }
    UserError::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("could not check annoy index \"{name}\": WAL replay changed the index during {STANDBY_PASSES} passes"),
    )
    .hint("Retry, or pause replay with pg_wal_replay_pause() during the check.")
    .raise()
}
