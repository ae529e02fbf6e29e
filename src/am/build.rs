//! `ambuild` / `ambuildempty`: one heap scan feeds the forest builder, which
//! writes items as they come and keeps only reduced vectors in memory
//! (bounded by `maintenance_work_mem`), then builds and writes the trees.
//! The pages are WAL-logged in one pass at the end (`log_newpage_range`).

use std::ffi::CStr;

use imgsim_forest::{BuildError, BuildPhase, Builder};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::options;
use super::page::{log_bulk_build, Logging, PgStore};
use super::relation::{index_metric, relation_name, tid_from_item_pointer};
use crate::error::UserError;
use crate::vector::VectorRef;

// commands/progress.h (not in the bindings).
const PROGRESS_CREATEIDX_SUBPHASE: i32 = 10;
const PROGRESS_CREATEIDX_TUPLES_TOTAL: i32 = 11;
const PROGRESS_CREATEIDX_TUPLES_DONE: i32 = 12;
/// Our sub-phases start after PROGRESS_CREATEIDX_SUBPHASE_INITIALIZE (1).
const SUBPHASE_LOADING: i64 = 2;
const SUBPHASE_LEARNING: i64 = 3;
const SUBPHASE_CODING: i64 = 4;
const SUBPHASE_TREES: i64 = 5;
const SUBPHASE_STREAMING: i64 = 6;

fn report_progress(param: i32, value: i64) {
    // SAFETY: plain backend-local progress bookkeeping.
    unsafe { pg_sys::pgstat_progress_update_param(param, value) }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildphasename(phase: i64) -> *mut std::ffi::c_char {
    let name: &CStr = match phase {
        SUBPHASE_LOADING => c"loading items",
        SUBPHASE_LEARNING => c"learning the tree space",
        SUBPHASE_CODING => c"coding items",
        SUBPHASE_TREES => c"building trees",
        SUBPHASE_STREAMING => c"adding items beyond maintenance_work_mem",
        _ => return std::ptr::null_mut(),
    };
    name.as_ptr().cast_mut()
}

struct BuildState<'s> {
    builder: Option<Builder<'s, PgStore>>,
    index_name: String,
    heap_tuples: f64,
    /// Rows with a vector (NULLs are not indexed) added so far.
    index_tuples: u64,
}

fn raise_build_error(index_name: &str, error: BuildError) -> ! {
    match error {
        BuildError::InvalidOptions(detail) => UserError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid annoy options: {detail}"),
        )
        .raise(),
        other => error!("annoy build of \"{index_name}\" failed: {other}"),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn build_callback(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _tuple_is_alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: `state` is the BuildState passed to the scan; one key column.
    let state = unsafe { &mut *state.cast::<BuildState>() };
    state.heap_tuples += 1.0;
    if unsafe { *isnull } {
        return; // NULL vectors are not indexed
    }
    let vector = unsafe { VectorRef::from_datum(*values) };
    let builder = state
        .builder
        .as_mut()
        .expect("builder present during the scan");
    let added_before = state.index_tuples;
    state.index_tuples += 1;
    match builder.add(tid_from_item_pointer(unsafe { &*tid }), vector.as_slice()) {
        // As pgvector's HNSW says when its graph outgrows the setting.
        Ok(true) => UserError::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!(
                "annoy index \"{}\" no longer fits into maintenance_work_mem after {} tuples",
                state.index_name, added_before
            ),
        )
        .detail("The rest are added to the trees one by one: the build takes longer.")
        .hint("Increase maintenance_work_mem to speed up builds.")
        .notice(),
        Ok(false) => {}
        Err(error) => raise_build_error(&state.index_name, error),
    }
    let done = state.heap_tuples as i64;
    if done % 1024 == 0 {
        report_progress(PROGRESS_CREATEIDX_TUPLES_DONE, done);
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambuild(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    // SAFETY: Postgres passes open, locked relations for the build.
    unsafe { build_internal(heap, index, index_info) }
}

/// Threads for building the trees: this backend plus as many helpers as
/// `max_parallel_maintenance_workers` allows, at most one per CPU.
pub(super) fn build_threads() -> usize {
    // SAFETY: reading a GUC variable.
    let helpers = unsafe { pg_sys::max_parallel_maintenance_workers }.max(0) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (1 + helpers).min(cpus)
}

/// Run first by each tree-building helper thread: Postgres' signal handlers
/// must run on the backend's own thread, so helpers take no signals.
pub(super) fn block_signals() {
    // SAFETY: a filled signal set applied to the calling thread only.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

unsafe fn build_internal(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    index_info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    // SAFETY (whole function): relations are open and locked by CREATE INDEX.
    unsafe {
        let index_name = relation_name(index);
        let store = PgStore::new(index, pg_sys::ForkNumber::MAIN_FORKNUM, Logging::BulkBuild);
        let build_options = options::build_options(index);
        let budget = pg_sys::maintenance_work_mem as usize * 1024;
        let builder = Builder::new(&store, build_options, index_metric(index), budget)
            .unwrap_or_else(|e| raise_build_error(&index_name, e))
            .with_threads(build_threads(), block_signals);
        let mut state = BuildState {
            builder: Some(builder),
            index_name,
            heap_tuples: 0.0,
            index_tuples: 0,
        };

        report_progress(PROGRESS_CREATEIDX_SUBPHASE, SUBPHASE_LOADING);
        report_progress(
            PROGRESS_CREATEIDX_TUPLES_TOTAL,
            (*(*heap).rd_rel).reltuples.max(0.0) as i64,
        );
        pg_sys::table_index_build_scan(
            heap,
            index,
            index_info,
            true,
            true,
            Some(build_callback),
            (&mut state as *mut BuildState).cast(),
            std::ptr::null_mut(),
        );

        let builder = state
            .builder
            .take()
            .expect("builder present after the scan");
        let stats = builder.finish(&mut |phase, done, total| {
            let subphase = match phase {
                BuildPhase::LoadingItems => SUBPHASE_LOADING,
                BuildPhase::LearningSpace => SUBPHASE_LEARNING,
                BuildPhase::Coding => SUBPHASE_CODING,
                BuildPhase::BuildingTrees => SUBPHASE_TREES,
                BuildPhase::StreamingItems => SUBPHASE_STREAMING,
            };
            report_progress(PROGRESS_CREATEIDX_SUBPHASE, subphase);
            report_progress(PROGRESS_CREATEIDX_TUPLES_TOTAL, total as i64);
            report_progress(PROGRESS_CREATEIDX_TUPLES_DONE, done as i64);
            pg_sys::check_for_interrupts!();
        });
        log_bulk_build(index, pg_sys::ForkNumber::MAIN_FORKNUM);

        let mut result = pgrx::PgBox::<pg_sys::IndexBuildResult>::alloc0();
        result.heap_tuples = state.heap_tuples;
        result.index_tuples = stats.items as f64;
        result.into_pg()
    }
}

/// The init fork of an unlogged index: an empty forest, copied over the
/// main fork when the server restarts after a crash.
#[pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(index: pg_sys::Relation) {
    // SAFETY: Postgres passes the open index being created.
    unsafe {
        let store = PgStore::new(index, pg_sys::ForkNumber::INIT_FORKNUM, Logging::BulkBuild);
        let name = relation_name(index);
        let builder = Builder::new(
            &store,
            options::build_options(index),
            index_metric(index),
            usize::MAX,
        )
        .unwrap_or_else(|e| raise_build_error(&name, e));
        builder.finish(&mut |_, _, _| {});
        log_bulk_build(index, pg_sys::ForkNumber::INIT_FORKNUM);
    }
}
