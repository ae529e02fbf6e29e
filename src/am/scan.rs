//! Index scans: `ORDER BY emb <op> query` answered by the forest searcher,
//! which returns heap TIDs in ascending exact distance over the candidates
//! it has gathered and keeps widening the search for as long as the
//! executor asks for rows (so filtered queries are not cut short).

use half::f16;
use imgsim_forest::Searcher;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgMemoryContexts, PgSqlErrorCode};

use super::options;
use super::page::{Logging, PgStore};
use super::relation::{
    item_pointer_from_tid, raise_corruption, refuse_non_mvcc_snapshot, relation_name,
};
use crate::error::UserError;
use crate::vector::{VectorRef, DIMS};

/// Per-scan state, owned by `scan->opaque`.
struct ScanState {
    /// Set by each rescan; owns its store (the index and a fork number).
    searcher: Option<Searcher<PgStore>>,
    index: pg_sys::Relation,
    index_name: String,
    /// Rows returned since the last rescan, against `annoy.max_scan_items`.
    returned: u64,
    max_scan_items: Option<u64>,
}

#[pg_guard]
pub unsafe extern "C-unwind" fn ambeginscan(
    index: pg_sys::Relation,
    nkeys: i32,
    norderbys: i32,
) -> pg_sys::IndexScanDesc {
    // SAFETY: Postgres passes the open index; RelationGetIndexScan allocates
    // the descriptor in the scan's memory context, as do our pallocs.
    unsafe {
        let scan = pg_sys::RelationGetIndexScan(index, nkeys, norderbys);
        // The AM owns the arrays for the distances it reports (as GiST does).
        let slots = norderbys.max(1) as usize;
        (*scan).xs_orderbyvals =
            pg_sys::palloc0(slots * std::mem::size_of::<pg_sys::Datum>()).cast();
        (*scan).xs_orderbynulls = pg_sys::palloc0(slots * std::mem::size_of::<bool>()).cast();
        let state = ScanState {
            searcher: None,
            index,
            index_name: relation_name(index),
            returned: 0,
            max_scan_items: None,
        };
        // Owned by the scan's memory context: freed when the context goes,
        // also when the query ends in an ERROR and amendscan never runs.
        (*scan).opaque = PgMemoryContexts::CurrentMemoryContext
            .leak_and_drop_on_delete(state)
            .cast();
        scan
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amrescan(
    scan: pg_sys::IndexScanDesc,
    _keys: pg_sys::ScanKey,
    _nkeys: i32,
    orderbys: pg_sys::ScanKey,
    norderbys: i32,
) {
    // SAFETY: `scan` comes from ambeginscan; `orderbys` has `norderbys` keys.
    unsafe {
        refuse_non_mvcc_snapshot(scan);
        let scan = &mut *scan;
        if norderbys > 0 && !orderbys.is_null() {
            std::ptr::copy(orderbys, scan.orderByData, norderbys as usize);
        }
        let state = &mut *scan.opaque.cast::<ScanState>();
        state.searcher = None;
        state.returned = 0;
        state.max_scan_items = options::max_scan_items();
        if scan.numberOfOrderBys == 0 {
            UserError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("annoy index \"{}\" can only be scanned with ORDER BY a distance operator", state.index_name),
            )
            .hint("Write ORDER BY emb <-> query LIMIT k (or <=>, <#> for the matching operator class).")
            .raise();
        }
        let key = &*scan.orderByData;
        let null_query;
        // A NULL query has no distances: the scan returns every item, in no
        // particular order (as a seq scan sorting NULLs would).
        let query: &[f16] = if key.sk_flags & pg_sys::SK_ISNULL as i32 != 0 {
            null_query = [f16::ZERO; DIMS];
            &null_query
        } else {
            VectorRef::from_datum(key.sk_argument).as_slice()
        };
        // The executor keeps the index open and locked until amendscan,
        // which drops the searcher and its store.
        let store = PgStore::new(
            state.index,
            pg_sys::ForkNumber::MAIN_FORKNUM,
            Logging::Generic,
        );
        match Searcher::new(store, query, options::search_params()) {
            Ok(searcher) => state.searcher = Some(searcher),
            Err(corruption) => raise_corruption(&state.index_name, corruption),
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amgettuple(
    scan: pg_sys::IndexScanDesc,
    direction: pg_sys::ScanDirection::Type,
) -> bool {
    if direction != pg_sys::ScanDirection::ForwardScanDirection {
        error!("annoy index scans only go forward");
    }
    // SAFETY: `scan` comes from ambeginscan and was rescanned.
    unsafe {
        let scan = &mut *scan;
        let state = &mut *scan.opaque.cast::<ScanState>();
        let Some(searcher) = state.searcher.as_mut() else {
            error!("annoy: amgettuple called before amrescan");
        };
        pg_sys::check_for_interrupts!();
        if state
            .max_scan_items
            .is_some_and(|bound| state.returned >= bound)
        {
            return false;
        }
        match searcher.next() {
            Some(Ok((tid, distance))) => {
                state.returned += 1;
                item_pointer_from_tid(tid, &mut scan.xs_heaptid);
                // Exact distances in ascending order: nothing to recheck.
                scan.xs_recheck = false;
                scan.xs_recheckorderby = false;
                *scan.xs_orderbyvals = pg_sys::Datum::from(f64::from(distance).to_bits());
                *scan.xs_orderbynulls = false;
                true
            }
            None => false,
            Some(Err(corruption)) => raise_corruption(&state.index_name, corruption),
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn amendscan(scan: pg_sys::IndexScanDesc) {
    // SAFETY: opaque was set by ambeginscan; the state itself is freed with
    // the scan's memory context, the searcher's memory is released now.
    unsafe {
        let state = &mut *(*scan).opaque.cast::<ScanState>();
        state.searcher = None;
    }
}
