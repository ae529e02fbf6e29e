//! `amcostestimate`: cheap for `ORDER BY emb <op> q` (the scan reads a few
//! leaves and re-ranks a few items), and never chosen for anything else.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::options;

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
        // Item pages read to re-rank; candidates scored from leaf codes.
        let visited = (params.rerank as f64).min(index_tuples);
        let scored = (params.search_k as f64).min(index_tuples);
        let mut costs = pg_sys::GenericCosts {
            numIndexTuples: visited,
            ..Default::default()
        };
        pg_sys::genericcostestimate(root, path, loop_count, &mut costs);
        let scoring = scored * pg_sys::cpu_operator_cost;
        // The search happens before the first row comes back. Returning
        // every row means widening to the whole index (an item page per
        // row): then a seq scan and an exact sort is the better plan.
        *startup_cost = costs.indexTotalCost + scoring;
        *total_cost = *startup_cost + index_tuples * pg_sys::random_page_cost;
        *selectivity = 1.0;
        *correlation = 0.0;
        *pages = costs.numIndexPages;
    }
}
