//! `amcostestimate`: cheap for `ORDER BY emb <op> q` (the scan reads a few
//! leaves and re-ranks a few items), and never chosen for anything else.
//! Under a filter the scan has to go deep, and each row past the first batch
//! costs a widening of the search: priced so, the planner takes the exact
//! plan (a seq scan and a sort) when the filter is selective enough.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::options;
use crate::vector::DIMS;

/// What a row past the first batch of a filtered scan is priced at, in
/// re-ranks (see `amcostestimate`).
const RERANKS_PRICED_PER_DEEP_ROW: f64 = 16.0;

#[pg_guard]
#[allow(clippy::too_many_arguments)] // the signature is Postgres'
pub unsafe extern "C-unwind" fn amcostestimate(
    root: *mut pg_sys::PlannerInfo,
    path: *mut pg_sys::IndexPath,
    loop_count: f64,
    startup_cost: *mut pg_sys::Cost,
    total_cost: *mut pg_sys::Cost,
    selectivity: *mut pg_sys::Selectivity,
    correlation: *mut f64,
    pages: *mut f64,
) {
    // SAFETY: the planner passes valid pointers for every output.
    unsafe {
        if (*path).indexorderbys.is_null() {
            // We only serve ORDER BY distance; a path without it is useless.
            *startup_cost = f64::INFINITY;
            *total_cost = f64::INFINITY;
            *selectivity = 0.0;
            *correlation = 0.0;
            *pages = 0.0;
            return;
        }
        let index = (*path).indexinfo;
        let index_tuples = (*index).tuples.max(1.0);
        let params = options::search_params();
        // Item pages read to re-rank; candidates scored from leaf codes. The
        // metric's default batch (0) is priced as the largest, inner
        // product's: the metric is not known here without opening the index.
        let rerank = params.first_batch(imgsim_forest::Metric::InnerProduct);
        let visited = (rerank as f64).min(index_tuples);
        let scored = (params.search_k as f64).min(index_tuples);
        let mut costs = pg_sys::GenericCosts {
            numIndexTuples: visited,
            ..Default::default()
        };
        pg_sys::genericcostestimate(root, path, loop_count, &mut costs);
        let scoring = scored * pg_sys::cpu_operator_cost;
        // The search happens before the first row comes back. The planner
        // prices k rows as startup + k/N of the rest. Without a filter a
        // LIMIT takes the first rows, which come with the first batch: an
        // item page per row. With a filter of selectivity s a LIMIT k needs
        // k/s rows, and every row past the first batch widens the search (it
        // scores search::CANDIDATES_PER_ROW more candidates by code and
        // re-ranks the best). On 100k rows that costs 0.05-0.15 ms a row,
        // about what 16 re-ranks cost (an item page and a 2048-d distance
        // each, the item's vector straddling two pages half the time). That
        // puts the switch to the exact plan near 2 % selectivity; measured,
        // the index is 4.5x slower than the exact plan at 1 % and 9x faster
        // at 10 % (BENCHMARKS.md).
        let rel = (*index).rel;
        let filtered = !rel.is_null() && !(*rel).baserestrictinfo.is_null();
        let per_row = if filtered {
            RERANKS_PRICED_PER_DEEP_ROW
                * (1.5 * pg_sys::random_page_cost + DIMS as f64 * pg_sys::cpu_operator_cost)
        } else {
            pg_sys::random_page_cost
        };
        *startup_cost = costs.indexTotalCost + scoring;
        *total_cost = *startup_cost + index_tuples * per_row;
        *selectivity = 1.0;
        *correlation = 0.0;
        *pages = costs.numIndexPages;
    }
}
