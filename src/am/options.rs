//! `WITH (...)` options of an annoy index and the `annoy.*` GUCs.
//!
//! Reloptions are not versioned, so the build copies the options it used
//! into the metapage; scans and inserts read them from there.

use std::ffi::CStr;
use std::mem::offset_of;

use imgsim_forest::{Options, SearchParams, DEFAULT_SEARCH_K};
use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};

/// The parsed reloptions, as `build_reloptions` lays them out (a varlena).
#[repr(C)]
struct AnnoyRelOptions {
    vl_len: i32,
    trees: i32,
    leaf_size: i32,
    rebuild_rows: i32,
}

static mut RELOPT_KIND: pg_sys::relopt_kind::Type = 0;

const TREES_DEFAULT: i32 = imgsim_forest::DEFAULT_TREES as i32;
const TREES_MAX: i32 = 64;
const LEAF_SIZE_MAX: i32 = 1000;
/// The rebuild locks the index for about 2 s per 10 000 rows and codes up
/// to twice this many rows in memory (about 120 MB at this bound).
const REBUILD_ROWS_MAX: i32 = 100_000;

pub static SEARCH_K: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_SEARCH_K as i32);
/// 0: the metric's default (`imgsim_forest::default_rerank`).
pub static RERANK: GucSetting<i32> = GucSetting::<i32>::new(0);
/// 0: no bound (a scan can go on to every item of the index).
pub static MAX_SCAN_ITEMS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Developer option (0: off): a pause at every step of a VACUUM compaction.
pub static COMPACTION_STEP_DELAY: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Register the reloptions and GUCs; called once from `_PG_init`.
pub fn init() {
    // SAFETY: _PG_init runs once per backend, single-threaded.
    unsafe {
        RELOPT_KIND = pg_sys::add_reloption_kind();
        pg_sys::add_int_reloption(
            RELOPT_KIND,
            c"trees".as_ptr(),
            c"Number of random-projection trees".as_ptr(),
            TREES_DEFAULT,
            1,
            TREES_MAX,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        pg_sys::add_int_reloption(
            RELOPT_KIND,
            c"leaf_size".as_ptr(),
            c"Most items per leaf (0: as many as fit a page)".as_ptr(),
            0,
            0,
            LEAF_SIZE_MAX,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
        pg_sys::add_int_reloption(
            RELOPT_KIND,
            c"rebuild_rows".as_ptr(),
            c"A build from fewer rows rebuilds its trees once when the index holds this many (0: never)"
                .as_ptr(),
            imgsim_forest::rebuild::REBUILD_ROWS as i32,
            0,
            REBUILD_ROWS_MAX,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
        );
    }
    GucRegistry::define_int_guc(
        c"annoy.search_k",
        c"Candidates an annoy index scan scores before returning rows.",
        c"Higher finds more of the true nearest neighbours and costs more time. When the \
          query needs more rows (filters, large LIMIT), the scan keeps widening by this many.",
        &SEARCH_K,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"annoy.rerank",
        c"Candidates re-ranked with exact distances in an annoy scan's first batch (0: by metric).",
        c"The best candidates by compact code are re-ranked with the full vectors stored in the index; \
          more are re-ranked while one could still be closer. 0 takes 50 for <-> and <=>, 100 for <#>.",
        &RERANK,
        0,
        100_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"annoy.max_scan_items",
        c"Most rows one annoy index scan returns (0: no limit).",
        c"A filtered query (WHERE ... ORDER BY emb <-> q LIMIT k) makes the scan widen until k rows \
          pass the filter; with a filter that almost nothing passes, that can mean the whole index. \
          At this bound the scan ends, and the query returns the rows found so far (possibly fewer than k).",
        &MAX_SCAN_ITEMS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"annoy.compaction_step_delay",
        c"Developer option: a VACUUM compaction of an annoy index pauses this long at each step.",
        c"For tests of what happens while a compaction runs (a query arriving, a crash), which \
          otherwise takes a fraction of a second on a small index. Not for production use.",
        &COMPACTION_STEP_DELAY,
        0,
        10_000,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL | GucFlags::UNIT_MS,
    );
}

/// The bound on rows per scan, if any.
pub fn max_scan_items() -> Option<u64> {
    let bound = MAX_SCAN_ITEMS.get();
    (bound > 0).then_some(bound as u64)
}

/// The search knobs for a scan starting now.
pub fn search_params() -> SearchParams {
    SearchParams {
        search_k: SEARCH_K.get() as usize,
        rerank: RERANK.get() as usize,
    }
}

const fn parse_entry(name: &'static CStr, offset: usize) -> pg_sys::relopt_parse_elt {
    pg_sys::relopt_parse_elt {
        optname: name.as_ptr(),
        opttype: pg_sys::relopt_type::RELOPT_TYPE_INT,
        offset: offset as i32,
    }
}

/// `amoptions`: parse and validate `WITH (...)`. Out-of-range values are
/// refused by Postgres with SQLSTATE 22023 and the option's bounds.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn amoptions(
    reloptions: pg_sys::Datum,
    validate: bool,
) -> *mut pg_sys::bytea {
    let table = [
        parse_entry(c"trees", offset_of!(AnnoyRelOptions, trees)),
        parse_entry(c"leaf_size", offset_of!(AnnoyRelOptions, leaf_size)),
        parse_entry(c"rebuild_rows", offset_of!(AnnoyRelOptions, rebuild_rows)),
    ];
    // SAFETY: the table describes AnnoyRelOptions; RELOPT_KIND was set in _PG_init.
    unsafe {
        pg_sys::build_reloptions(
            reloptions,
            validate,
            RELOPT_KIND,
            std::mem::size_of::<AnnoyRelOptions>(),
            table.as_ptr(),
            table.len() as i32,
        )
        .cast()
    }
}

/// Build options from the index's reloptions (defaults where unset).
///
/// # Safety
/// `index` must be an open annoy index relation.
pub unsafe fn build_options(index: pg_sys::Relation) -> Options {
    let mut options = Options::default();
    // SAFETY: rd_options is null or what amoptions returned.
    unsafe {
        let parsed = (*index).rd_options.cast::<AnnoyRelOptions>();
        if !parsed.is_null() {
            options.trees = (*parsed).trees as u32;
            options.leaf_size = (*parsed).leaf_size as u32;
            options.rebuild_rows = (*parsed).rebuild_rows as u32;
        } else {
            options.trees = TREES_DEFAULT as u32;
        }
    }
    options
}
