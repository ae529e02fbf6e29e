//! The one rebuild of an index built on too few items (`imgsim_forest::rebuild`).
mod common;

use std::collections::HashSet;

use common::*;
use half::f16;
use imgsim_forest::format::MetaHeader;
use imgsim_forest::format::OnDisk;
use imgsim_forest::{
    build, bulk_delete, check, insert, rebuild, MemStore, Metric, Options, PageStore, RebuildStats,
    SearchParams, Searcher,
};

const BUDGET: usize = 1 << 30;

fn options(rebuild_rows: u32) -> Options {
    Options {
        trees: 4,
        reduced_dims: 64,
        rebuild_rows,
        ..Options::default()
    }
}

fn build_index(data: &[Vec<f16>], options: Options) -> MemStore {
    let store = MemStore::postgres_sized();
    let items = data.iter().enumerate().map(|(i, v)| (tid(i), v.as_slice()));
    build(
        &store,
        options,
        Metric::L2,
        items,
        BUDGET,
        &mut |_, _, _| {},
    )
    .expect("build");
    store
}

fn rebuild_now(store: &MemStore) -> Option<RebuildStats> {
    rebuild(store, 1, || {}, &mut |_, _, _| {}).expect("rebuild")
}

fn meta(store: &MemStore) -> MetaHeader {
    MetaHeader::read(&store.read(0))
}

/// Mean recall@10 of default searches against brute force.
fn mean_recall(store: &MemStore, data: &[Vec<f16>], queries: &[Vec<f16>]) -> f64 {
    let params = SearchParams {
        search_k: 200,
        rerank: 40,
    };
    let total: f64 = queries
        .iter()
        .map(|q| {
            let found: Vec<usize> = Searcher::new(store, q, params)
                .expect("searcher")
                .take(10)
                .map(|r| index_of(r.expect("search").0))
                .collect();
            recall(&brute_force(Metric::L2, data, q, 10), &found)
        })
        .sum();
    total / queries.len() as f64
}

/// Inserts `data[range]` one by one; returns the insert counts (1-based)
/// after which an insert said the rebuild was due.
fn insert_range(store: &MemStore, data: &[Vec<f16>], range: std::ops::Range<usize>) -> Vec<usize> {
    range
        .filter(|&i| insert(store, tid(i), &data[i]).expect("insert").rebuild_due)
        .map(|i| i + 1)
        .collect()
}

/// An index created empty asks for its rebuild from the insert that makes
/// `rebuild_rows` items live until twice that many; the rebuild learns a
/// tree space, its trees reach every item, the old pages are given back and
/// reused, and it happens once.
#[test]
fn an_index_created_empty_is_rebuilt_once_it_has_rows() {
    let mut gen = Manifold::new(20, 16, 5);
    let data = gen.items(1200);
    let store = build_index(&[], options(500));
    assert_eq!(meta(&store).rebuild_at, 500);

    let due = insert_range(&store, &data, 0..600);
    assert_eq!(due, (500..=600).collect::<Vec<_>>());
    let before = check(&store).expect("check before");
    let basis_before = meta(&store).basis_checksum;

    let stats = rebuild_now(&store).expect("due");
    assert_eq!(stats.items, 600);
    let after = check(&store).expect("check after");
    assert_eq!(after.live_items, 600);
    assert_eq!(after.leaf_entries, 4 * 600);
    assert_eq!(after.unused_pages, 0);
    // The old trees and basis are given back, whole.
    assert_eq!(
        stats.freed_pages,
        before.leaf_pages + before.split_pages + before.basis_pages
    );
    assert_eq!(after.free_pages, stats.freed_pages);
    let h = meta(&store);
    assert_eq!(h.rebuild_at, 0);
    assert_ne!(h.basis_checksum, basis_before, "a new tree space");

    // Once only.
    assert_eq!(rebuild_now(&store), None);
    // Inserts reuse the freed pages before growing the index.
    let nblocks = store.nblocks();
    assert!(insert_range(&store, &data, 600..1200).is_empty());
    let report = check(&store).expect("check after more inserts");
    assert_eq!(report.live_items, 1200);
    assert!(report.free_pages < after.free_pages, "{report:?}");
    assert!(store.nblocks() - nblocks < report.item_pages - after.item_pages + 10);
    // Every item is reached once.
    let q = &gen.items(1)[0];
    let all: Vec<usize> = Searcher::new(&store, q, SearchParams::default())
        .expect("searcher")
        .map(|r| index_of(r.expect("search").0))
        .collect();
    assert_eq!(all.len(), 1200);
    assert_eq!(all.iter().copied().collect::<HashSet<_>>().len(), 1200);
}

/// After the rebuild the index is as good as a fresh build on the same
/// items (both then grown by the same inserts), and far better than the
/// same index never rebuilt.
#[test]
fn the_rebuilt_index_recalls_like_a_fresh_build() {
    let mut gen = Manifold::new(30, 32, 6);
    let data = gen.items(3000);
    let queries = gen.items(60);
    let grown = |rebuild_rows: u32, rebuild_at: Option<usize>| {
        let store = build_index(&[], options(rebuild_rows));
        for (i, v) in data.iter().enumerate() {
            insert(&store, tid(i), v).expect("insert");
            if Some(i + 1) == rebuild_at {
                rebuild_now(&store).expect("due");
            }
        }
        check(&store).expect("check");
        mean_recall(&store, &data, &queries)
    };
    let rebuilt = grown(1000, Some(1000));
    let never = grown(0, None);
    let fresh = {
        let store = build_index(&data[..1000], options(0));
        insert_range(&store, &data, 1000..3000);
        mean_recall(&store, &data, &queries)
    };
    assert!(rebuilt >= fresh - 0.02, "rebuilt {rebuilt}, fresh {fresh}");
    assert!(rebuilt >= never + 0.05, "rebuilt {rebuilt}, never {never}");
}

/// Deleted items are left out of the new trees; VACUUM still frees them.
#[test]
fn deleted_items_stay_out_of_the_rebuilt_trees() {
    let mut gen = Clustered::new(4, 7);
    let data = gen.items(300);
    let store = build_index(&[], options(200));
    insert_range(&store, &data, 0..300);
    // Flag every third deleted, as a VACUUM cut off before freeing would.
    let stats = bulk_delete(&store, &mut |t| index_of(t).is_multiple_of(3)).expect("vacuum");
    assert_eq!(stats.deleted, 100);
    assert_eq!(rebuild_now(&store).expect("due").items, 200);
    let report = check(&store).expect("check");
    assert_eq!((report.live_items, report.leaf_entries), (200, 4 * 200));
    let found: Vec<usize> = Searcher::new(&store, &data[0], SearchParams::default())
        .expect("searcher")
        .map(|r| index_of(r.expect("search").0))
        .collect();
    assert_eq!(found.len(), 200);
    assert!(found.iter().all(|i| i % 3 != 0));
}

/// A fresh build on enough items never asks for a rebuild; one on fewer
/// asks once it holds `rebuild_rows` items, and gives up past twice that.
#[test]
fn when_a_rebuild_is_due() {
    let mut gen = Clustered::new(4, 8);
    let data = gen.items(500);
    let big = build_index(&data[..200], options(200));
    assert_eq!(meta(&big).rebuild_at, 0);
    assert!(insert_range(&big, &data, 200..300).is_empty());
    assert_eq!(rebuild_now(&big), None);

    let small = build_index(&data[..50], options(100));
    assert_eq!(meta(&small).rebuild_at, 100);
    assert_eq!(
        insert_range(&small, &data, 50..300),
        (100..=200).collect::<Vec<_>>()
    );
    assert_eq!(rebuild_now(&small), None, "past twice rebuild_rows");
    let never = build_index(&[], options(0));
    assert!(insert_range(&never, &data, 0..300).is_empty());
}

/// A rebuild cut off before the metapage points at the new forest leaves the
/// old one intact: the new pages are unreachable (wasted, as `check` counts).
#[test]
fn a_rebuild_cut_off_leaves_the_old_forest() {
    let mut gen = Clustered::new(4, 9);
    let data = gen.items(150);
    let store = build_index(&[], options(100));
    insert_range(&store, &data, 0..150);
    let before = check(&store).expect("check");
    let nblocks = store.nblocks();
    let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rebuild(&store, 1, || {}, &mut |phase, done, total| {
            if phase == imgsim_forest::BuildPhase::BuildingTrees && done == total {
                panic!("cancel");
            }
        })
    }));
    assert!(cut.is_err());
    let after = check(&store).expect("old forest intact");
    assert_eq!(after.live_items, before.live_items);
    assert_eq!(after.leaf_pages, before.leaf_pages);
    assert_eq!(after.unused_pages, store.nblocks() - nblocks);
    assert!(after.unused_pages > 0);
    assert_eq!(meta(&store).rebuild_at, 100, "still due");
    assert!(rebuild_now(&store).is_some());
    check(&store).expect("check after the rebuild");
}
