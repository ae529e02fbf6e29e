mod common;

use std::collections::HashSet;

use common::*;
use half::f16;
use imgsim_forest::format::*;
use imgsim_forest::search::exact_distance;
use imgsim_forest::{
    build, bulk_delete, check, default_rerank, insert, BuildError, BuildPhase, BuildStats, Builder,
    MemStore, Metric, Options, PageKind, PageStore, SearchParams, Searcher, Tid,
};

const BUDGET: usize = 1 << 30;

fn build_index(data: &[Vec<f16>], metric: Metric, options: Options) -> (MemStore, BuildStats) {
    let store = MemStore::postgres_sized();
    let items = data.iter().enumerate().map(|(i, v)| (tid(i), v.as_slice()));
    let stats = build(&store, options, metric, items, BUDGET, &mut |_, _, _| {}).expect("build");
    (store, stats)
}

fn search(store: &MemStore, q: &[f16], params: SearchParams, k: usize) -> Vec<(Tid, f32)> {
    let searcher = Searcher::new(store, q, params).expect("searcher");
    searcher.take(k).map(|r| r.expect("search")).collect()
}

fn recall_at_10(metric: Metric) -> f64 {
    let mut gen = Clustered::new(100, 42);
    let data = gen.items(20_000);
    let queries = gen.queries(100);
    let (store, _) = build_index(&data, metric, Options::default());
    let mut total = 0.0;
    for q in &queries {
        let truth = brute_force(metric, &data, q, 10);
        let found: Vec<usize> = search(&store, q, SearchParams::default(), 10)
            .iter()
            .map(|(t, _)| index_of(*t))
            .collect();
        total += recall(&truth, &found);
    }
    total / queries.len() as f64
}

#[test]
#[cfg_attr(debug_assertions, ignore = "slow in debug builds; run with --release")]
fn recall_l2() {
    let r = recall_at_10(Metric::L2);
    eprintln!("L2 recall@10 {r}");
    assert!(r >= 0.95, "L2 recall@10 {r}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "slow in debug builds; run with --release")]
fn recall_cosine() {
    let r = recall_at_10(Metric::Cosine);
    eprintln!("cosine recall@10 {r}");
    assert!(r >= 0.95, "cosine recall@10 {r}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "slow in debug builds; run with --release")]
fn recall_inner_product() {
    let r = recall_at_10(Metric::InnerProduct);
    eprintln!("inner product recall@10 {r}");
    assert!(r >= 0.95, "inner product recall@10 {r}");
}

/// `rerank` 0 (the default) takes the metric's first batch: a search with
/// it reads the same pages as one with the metric's explicit default, and
/// the two settings compared read different numbers of pages (the first
/// batch reads an item per candidate), so the test can tell them apart.
#[test]
fn rerank_zero_takes_the_metrics_default() {
    let mut gen = Clustered::new(5, 11);
    let data = gen.items(1000);
    let q = &gen.queries(1)[0];
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let (store, _) = build_index(&data, metric, Options::default());
        let store = TestStore::new(store);
        let pages_read = |rerank| {
            let params = SearchParams {
                search_k: 500,
                rerank,
            };
            let before = store.reads.get();
            let searcher = Searcher::new(&store, q, params).expect("searcher");
            assert_eq!(searcher.take(10).filter(Result::is_ok).count(), 10);
            store.reads.get() - before
        };
        pages_read(0); // the first search also reads the basis pages
        let default = pages_read(0);
        assert_eq!(default, pages_read(default_rerank(metric)), "{metric:?}");
        assert_ne!(pages_read(40), pages_read(100), "{metric:?}");
    }
    assert_eq!(SearchParams::default().rerank, 0);
}

/// Small index with small leaves so the trees are deep.
fn small_options() -> Options {
    Options {
        trees: 3,
        leaf_size: 5,
        reduced_dims: 64,
        ..Options::default()
    }
}

#[test]
fn iterates_every_item_once_first_batch_ascending() {
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let mut gen = Clustered::new(5, 7);
        let data = gen.items(300);
        let (store, _) = build_index(&data, metric, small_options());
        check(&store).expect("check");
        let q = &gen.queries(1)[0];
        // The index computes with the dispatching (SIMD) kernels.
        let qn = imgsim_kernels::norm_squared(q);
        let rerank = 25;
        let all = search(
            &store,
            q,
            SearchParams {
                search_k: 40,
                rerank,
            },
            usize::MAX,
        );
        assert_eq!(all.len(), data.len(), "{metric:?}");
        let tids: HashSet<Tid> = all.iter().map(|(t, _)| *t).collect();
        assert_eq!(tids.len(), data.len(), "{metric:?}: repeated items");
        for (t, d) in &all {
            let x = &data[index_of(*t)];
            let expected = exact_distance(metric, q, qn, x, imgsim_kernels::norm_squared(x));
            assert_eq!(
                d.to_bits(),
                expected.to_bits(),
                "{metric:?}: distance of {t:?}"
            );
        }
        // The first `rerank` results are in ascending exact distance.
        assert!(
            all[..rerank].windows(2).all(|w| w[0].1 <= w[1].1),
            "{metric:?}: first batch not ascending"
        );
    }
}

/// The first 10 results of a search whose search_k and rerank cover the
/// whole index (at most 400 items): these must be the exact top 10.
fn exhaustive_top10(store: &MemStore, q: &[f16]) -> Vec<usize> {
    let params = SearchParams {
        search_k: 10_000,
        rerank: 400,
    };
    search(store, q, params, 10)
        .iter()
        .map(|(t, _)| index_of(*t))
        .collect()
}

/// With every item scored and a first batch of one, only the stopping rule
/// (the metric's slack) keeps rows in order: the first 25 rows of a scan
/// (as many as pg_regress checks) must be the exact top 25, in order.
#[test]
fn stopping_rule_returns_rows_in_exact_order() {
    let mut gen = Clustered::new(20, 13);
    let data = gen.items(2000);
    let queries = gen.queries(10);
    for metric in [Metric::L2, Metric::Cosine] {
        let (store, _) = build_index(&data, metric, Options::default());
        for (i, q) in queries.iter().enumerate() {
            let params = SearchParams {
                search_k: data.len(),
                rerank: 1,
            };
            let found: Vec<usize> = search(&store, q, params, 25)
                .iter()
                .map(|(t, _)| index_of(*t))
                .collect();
            assert_eq!(
                found,
                brute_force(metric, &data, q, 25),
                "{metric:?}, query {i}"
            );
        }
    }
}

#[test]
fn first_results_match_brute_force_on_small_index() {
    let mut gen = Clustered::new(5, 8);
    let data = gen.items(400);
    let (store, _) = build_index(&data, Metric::L2, small_options());
    let q = &gen.queries(1)[0];
    assert_eq!(
        exhaustive_top10(&store, q),
        brute_force(Metric::L2, &data, q, 10)
    );
}

#[test]
fn empty_index() {
    let (store, stats) = build_index(&[], Metric::L2, Options::default());
    assert_eq!(stats.items, 0);
    let report = check(&store).expect("check");
    assert_eq!(report.items, 0);
    assert_eq!(report.leaf_pages, 0);
    let q = vec![f16::ONE; DIMS];
    assert!(search(&store, &q, SearchParams::default(), 10).is_empty());
}

#[test]
fn one_item() {
    let v: Vec<f16> = (0..DIMS).map(|i| f16::from_f32((i % 7) as f32)).collect();
    let (store, _) = build_index(std::slice::from_ref(&v), Metric::L2, Options::default());
    let report = check(&store).expect("check");
    assert_eq!(
        (report.items, report.leaf_pages, report.leaf_entries),
        (1, 16, 16)
    );
    let found = search(&store, &v, SearchParams::default(), 10);
    assert_eq!(found, vec![(tid(0), 0.0)]);
}

#[test]
fn many_duplicates() {
    let mut gen = Clustered::new(3, 9);
    let dup = gen.sample(0.0);
    let mut data = vec![dup.clone(); 500];
    data.extend(gen.items(50));
    let (store, _) = build_index(&data, Metric::L2, small_options());
    let report = check(&store).expect("check");
    assert_eq!(report.live_items, 550);
    let found = search(
        &store,
        &dup,
        SearchParams {
            search_k: 100,
            rerank: 50,
        },
        600,
    );
    assert_eq!(
        found.len(),
        550,
        "k larger than the index returns every item"
    );
    assert!(found[..50]
        .iter()
        .all(|(t, d)| index_of(*t) < 500 && *d == 0.0));
    let distinct: HashSet<Tid> = found.iter().map(|(t, _)| *t).collect();
    assert_eq!(distinct.len(), 550);
}

#[test]
fn deterministic_for_a_seed() {
    let mut gen = Clustered::new(4, 10);
    let data = gen.items(200);
    let (a, _) = build_index(&data, Metric::L2, small_options());
    let (b, _) = build_index(&data, Metric::L2, small_options());
    assert_eq!(a.nblocks(), b.nblocks());
    for blk in 0..a.nblocks() {
        assert_eq!(&*a.read(blk), &*b.read(blk), "block {blk}");
    }
}

fn build_with_threads(
    data: &[Vec<f16>],
    threads: usize,
    budget: usize,
    progress: &mut dyn FnMut(BuildPhase, u64, u64),
) -> MemStore {
    let store = MemStore::postgres_sized();
    let mut builder = Builder::new(&store, five_trees(), Metric::L2, budget)
        .expect("builder")
        .with_threads(threads, || {});
    for (i, v) in data.iter().enumerate() {
        builder.add(tid(i), v).expect("add");
    }
    builder.finish(progress);
    store
}

fn five_trees() -> Options {
    Options {
        trees: 5,
        ..small_options()
    }
}

/// Trees built on several threads are the same pages as built on one, also
/// when the memory budget only allows one tree at a time.
#[test]
fn threads_do_not_change_the_index() {
    let mut gen = Clustered::new(6, 22);
    let data = gen.items(2000);
    let one = build_with_threads(&data, 1, BUDGET, &mut |_, _, _| {});
    let mut trees_done = Vec::new();
    let three = build_with_threads(&data, 3, BUDGET, &mut |phase, done, _| {
        if phase == BuildPhase::BuildingTrees {
            trees_done.push(done);
        }
    });
    assert_eq!(one.nblocks(), three.nblocks());
    for blk in 0..one.nblocks() {
        assert_eq!(&*one.read(blk), &*three.read(blk), "block {blk}");
    }
    assert_eq!(trees_done.last(), Some(&5));
    check(&three).expect("check");

    let tight = Builder::<MemStore>::required_memory(&five_trees(), 2000, 1);
    assert!(Builder::<MemStore>::required_memory(&five_trees(), 2000, 2) > tight);
    let squeezed = build_with_threads(&data, 3, tight, &mut |_, _, _| {});
    for blk in 0..one.nblocks() {
        assert_eq!(&*one.read(blk), &*squeezed.read(blk), "block {blk}");
    }
}

/// A cancel during the tree phase (`progress` raising, as Postgres'
/// interrupt check does) stops the helper threads and unwinds promptly.
#[test]
fn cancel_while_building_trees_on_threads() {
    let mut gen = Clustered::new(6, 23);
    let data = gen.items(3000);
    let cancelled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        build_with_threads(&data, 3, BUDGET, &mut |phase, _, _| {
            assert!(phase != BuildPhase::BuildingTrees, "cancelled");
        })
    }));
    assert!(cancelled.is_err());
}

/// A budget that holds only part of the items: the rest are streamed into
/// the trees after they are built, and the index is as complete and nearly
/// as good as one built in memory.
#[test]
#[cfg_attr(debug_assertions, ignore = "slow in debug builds; run with --release")]
fn build_past_the_memory_budget_streams_the_rest() {
    let mut gen = Clustered::new(20, 11);
    let data = gen.items(6000);
    let queries = gen.queries(50);
    let options = Options {
        trees: 4,
        ..Options::default()
    };
    let in_memory = build_index(&data, Metric::L2, options).0;
    // Enough for the fixed part and about 2000 items.
    let budget = Builder::<MemStore>::required_memory(&options, 2000, 1);
    let store = MemStore::postgres_sized();
    let mut phases = Vec::new();
    let items = data.iter().enumerate().map(|(i, v)| (tid(i), v.as_slice()));
    let stats = build(
        &store,
        options,
        Metric::L2,
        items,
        budget,
        &mut |phase, done, total| {
            if phase == BuildPhase::StreamingItems {
                phases.push((done, total));
            }
        },
    )
    .expect("build within a small budget");
    assert_eq!(stats.items, 6000);
    assert!(
        (3900..=4100).contains(&stats.streamed),
        "streamed {}",
        stats.streamed
    );
    assert_eq!(phases.last(), Some(&(stats.streamed, stats.streamed)));
    let report = check(&store).expect("check");
    assert_eq!(report.live_items, 6000);
    assert_eq!(report.leaf_entries, 4 * 6000);
    let (mut streamed_recall, mut in_memory_recall) = (0.0, 0.0);
    for q in &queries {
        let truth = brute_force(Metric::L2, &data, q, 10);
        let found = |s: &MemStore| -> Vec<usize> {
            search(s, q, SearchParams::default(), 10)
                .iter()
                .map(|(t, _)| index_of(*t))
                .collect()
        };
        streamed_recall += recall(&truth, &found(&store));
        in_memory_recall += recall(&truth, &found(&in_memory));
    }
    let (s, m) = (streamed_recall / 50.0, in_memory_recall / 50.0);
    eprintln!("recall@10 streamed {s}, in memory {m}");
    assert!(s >= m - 0.05, "streamed build recall {s} vs {m}");
}

#[test]
fn rejects_bad_input() {
    let store = MemStore::postgres_sized();
    let short = vec![f16::ONE; 10];
    let err = build(
        &store,
        Options::default(),
        Metric::L2,
        [(tid(0), short.as_slice())],
        BUDGET,
        &mut |_, _, _| {},
    );
    assert!(matches!(
        err,
        Err(BuildError::WrongDimensions { dims: 10, .. })
    ));
    let store = MemStore::postgres_sized();
    let bad = Options {
        reduced_dims: 100,
        ..Options::default()
    };
    assert!(matches!(
        build(&store, bad, Metric::L2, [], BUDGET, &mut |_, _, _| {}),
        Err(BuildError::InvalidOptions(_))
    ));
}

/// Builds a small index, applies `corrupt`, and expects `check` to fail.
fn assert_detected(name: &str, corrupt: impl Fn(&MemStore, &Layout)) {
    let mut gen = Clustered::new(4, 12);
    let data = gen.items(120);
    let (store, _) = build_index(&data, Metric::L2, small_options());
    check(&store).expect("intact index passes");
    let layout = Layout::of(&store);
    corrupt(&store, &layout);
    assert!(check(&store).is_err(), "{name}: corruption not detected");
}

struct Layout {
    item: u32,
    split: u32,
    leaf: u32,
}

impl Layout {
    fn of(store: &MemStore) -> Self {
        let first = |kind| {
            (1..store.nblocks())
                .find(|&b| store.kind(b) == Some(kind))
                .expect("page of kind")
        };
        Layout {
            item: first(PageKind::Item),
            split: first(PageKind::Split),
            leaf: first(PageKind::Leaf),
        }
    }
}

fn flip(store: &MemStore, blk: u32, at: usize) {
    store.write(blk)[at] ^= 0x5A;
}

#[test]
fn check_detects_corruption() {
    assert_detected("meta magic", |s, _| flip(s, 0, 0));
    assert_detected("meta item count", |s, _| flip(s, 0, 48));
    assert_detected("page kind", |s, l| s.set_kind(l.leaf, PageKind::Item as u8));
    assert_detected("leaf count", |s, l| flip(s, l.leaf, 0));
    assert_detected("leaf entry item offset", |s, l| {
        flip(s, l.leaf, LeafPageHeader::SIZE + 4)
    });
    assert_detected("leaf code byte", |s, l| {
        flip(s, l.leaf, LeafPageHeader::SIZE + LeafEntryHeader::SIZE + 3)
    });
    assert_detected("split child", |s, l| {
        flip(s, l.split, SplitPageHeader::SIZE)
    });
    assert_detected("split normal", |s, l| {
        flip(
            s,
            l.split,
            SplitPageHeader::SIZE + SplitNodeHeader::SIZE + 3,
        )
    });
    assert_detected("item vector", |s, l| {
        flip(
            s,
            l.item,
            ItemPageHeader::SIZE + ItemRecordHeader::SIZE + 101,
        )
    });
    assert_detected("item tid flags", |s, l| {
        flip(s, l.item, ItemPageHeader::SIZE + 6)
    });
    assert_detected("item chain link", |s, l| flip(s, l.item, 0));
}

#[test]
fn corrupted_page_makes_search_fail_not_panic() {
    let mut gen = Clustered::new(4, 13);
    let data = gen.items(120);
    let (store, _) = build_index(&data, Metric::L2, small_options());
    let split = (1..store.nblocks())
        .find(|&b| store.kind(b) == Some(PageKind::Split))
        .expect("split page");
    store.write(split)[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let results: Vec<_> = Searcher::new(
        &store,
        &data[0],
        SearchParams {
            search_k: 1000,
            rerank: 200,
        },
    )
    .expect("meta ok")
    .collect();
    assert!(results.iter().any(|r| r.is_err()));
}

fn all_results(store: &MemStore, q: &[f16]) -> Vec<(Tid, f32)> {
    search(
        store,
        q,
        SearchParams {
            search_k: 50,
            rerank: 20,
        },
        usize::MAX,
    )
}

#[test]
fn inserts_into_empty_index_split_leaves() {
    let mut gen = Clustered::new(4, 14);
    let data = gen.items(400);
    let (store, _) = build_index(&[], Metric::L2, small_options());
    for (i, v) in data.iter().enumerate() {
        insert(&store, tid(i), v).expect("insert");
    }
    let report = check(&store).expect("check");
    assert_eq!(report.live_items, 400);
    // 400 items do not fit one leaf page (101 entries at D' = 64): split.
    assert!(report.leaf_pages > 3 * 4, "{report:?}");
    assert_eq!(all_results(&store, &data[0]).len(), 400);
    let q = &gen.queries(1)[0];
    assert_eq!(
        exhaustive_top10(&store, q),
        brute_force(Metric::L2, &data, q, 10)
    );
}

/// Inserts split full leaves in place (half the entries move to a new leaf,
/// the parent gets the split node); only root leaves become pages holding a
/// split node, and splits under a full split page share its overflow page.
/// An index grown by inserts therefore takes about the tree pages of a fresh
/// build, not an extra page per split.
#[test]
fn leaf_splits_by_inserts_do_not_waste_pages() {
    let mut gen = Clustered::new(8, 23);
    let data = gen.items(3000);
    let options = Options {
        trees: 3,
        reduced_dims: 64,
        rebuild_rows: 0,
        ..Options::default()
    };
    let (grown, _) = build_index(&data[..300], Metric::L2, options);
    for (i, v) in data.iter().enumerate().skip(300) {
        insert(&grown, tid(i), v).expect("insert");
    }
    let (fresh, _) = build_index(&data, Metric::L2, options);
    let (g, f) = (check(&grown).expect("check"), check(&fresh).expect("check"));
    assert_eq!(g.leaf_entries, 3 * 3000);
    let tree_pages = |r: &imgsim_forest::CheckReport| r.leaf_pages + r.split_pages;
    assert!(
        tree_pages(&g) * 100 <= tree_pages(&f) * 115,
        "grown by inserts: {} tree pages, fresh build: {}",
        tree_pages(&g),
        tree_pages(&f)
    );
    let q = &gen.queries(1)[0];
    assert_eq!(
        exhaustive_top10(&grown, q),
        brute_force(Metric::L2, &data, q, 10)
    );
}

#[test]
fn inserts_after_build_and_bulk_delete() {
    for metric in [Metric::L2, Metric::InnerProduct] {
        let mut gen = Clustered::new(4, 15);
        let data = gen.items(600);
        let (store, _) = build_index(&data[..300], metric, small_options());
        for (i, v) in data.iter().enumerate().skip(300) {
            insert(&store, tid(i), v).expect("insert");
        }
        assert_eq!(check(&store).expect("check").live_items, 600);
        let q = &gen.queries(1)[0];
        let found: Vec<usize> = search(
            &store,
            q,
            SearchParams {
                search_k: 10_000,
                rerank: 600,
            },
            10,
        )
        .iter()
        .map(|(t, _)| index_of(*t))
        .collect();
        assert_eq!(found, brute_force(metric, &data, q, 10), "{metric:?}");

        let stats =
            bulk_delete(&store, &mut |t| index_of(t).is_multiple_of(3)).expect("bulk delete");
        assert_eq!(
            (stats.deleted, stats.live, stats.leaf_entries_removed),
            (200, 400, 200 * 3)
        );
        let report = check(&store).expect("check after delete");
        assert_eq!((report.live_items, report.deleted_items), (400, 200));
        let left: HashSet<usize> = all_results(&store, q)
            .iter()
            .map(|(t, _)| index_of(*t))
            .collect();
        assert_eq!(left, (0..600).filter(|i| i % 3 != 0).collect());
        let again =
            bulk_delete(&store, &mut |t| index_of(t).is_multiple_of(3)).expect("bulk delete");
        assert_eq!(again.deleted, 0);

        insert(&store, tid(600), &data[0]).expect("insert after delete");
        assert_eq!(check(&store).expect("check").live_items, 401);
        // data[0] was deleted; its copy is found, the deleted one is not.
        let results = all_results(&store, &data[0]);
        if metric == Metric::L2 {
            assert_eq!(results[0], (tid(600), 0.0));
        }
        assert!(results.iter().any(|(t, _)| *t == tid(600)));
        assert!(results.iter().all(|(t, _)| *t != tid(0)));
    }
}

/// An update-heavy load: every round inserts a new version of every row and
/// VACUUM removes the old ones. Freed records are refilled, so the item chain
/// stops growing after the first round, and the index stays searchable.
#[test]
fn vacuum_frees_records_that_inserts_reuse() {
    let mut gen = Clustered::new(4, 17);
    let rows = 300;
    let data = gen.items(rows);
    let (store, _) = build_index(&data, Metric::L2, small_options());
    let tid_of = |row: usize, v: usize| tid(v * rows + row);
    let mut item_pages = Vec::new();
    let mut nblocks = Vec::new();
    for round in 1..=4 {
        for (row, vector) in data.iter().enumerate() {
            insert(&store, tid_of(row, round), vector).expect("insert");
        }
        let stats = bulk_delete(&store, &mut |t| index_of(t) / rows < round).expect("vacuum");
        assert_eq!((stats.deleted, stats.freed, stats.live), (300, 300, 300));
        let report = check(&store).expect("check");
        assert_eq!(
            (report.live_items, report.deleted_items, report.free_items),
            (300, 300, 300),
            "round {round}"
        );
        item_pages.push(report.item_pages);
        nblocks.push(store.nblocks());
        let q = &gen.queries(1)[0];
        let found: Vec<usize> = exhaustive_top10(&store, q)
            .into_iter()
            .map(|i| i % rows)
            .collect();
        assert_eq!(
            found,
            brute_force(Metric::L2, &data, q, 10),
            "round {round}"
        );
    }
    assert!(
        item_pages.iter().all(|&p| p == item_pages[0]),
        "item chain grew: {item_pages:?}"
    );
    // Leaves refill too; a few may still split as entries land unevenly.
    assert!(
        nblocks[3] as f64 <= nblocks[1] as f64 * 1.05,
        "index grew: {nblocks:?} pages"
    );
}

/// VACUUM stopped (query cancel, crash) after flagging records: the index
/// stays consistent, searches skip them, and the next VACUUM frees them.
#[test]
fn interrupted_vacuum_is_finished_by_the_next() {
    let mut gen = Clustered::new(4, 18);
    let data = gen.items(200);
    let (store, _) = build_index(&data, Metric::L2, small_options());
    let mut calls = 0;
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bulk_delete(&store, &mut |t| {
            calls += 1;
            assert!(calls <= 150, "interrupted");
            index_of(t).is_multiple_of(2)
        })
    }));
    assert!(interrupted.is_err());
    let report = check(&store).expect("check after interrupted vacuum");
    let flagged = report.deleted_items;
    assert!(flagged > 0 && flagged < 100, "{report:?}");
    assert_eq!((report.live_items, report.free_items), (200 - flagged, 0));
    let q = &data[0];
    assert!(all_results(&store, q)
        .iter()
        .all(|(t, _)| index_of(*t) % 2 == 1 || index_of(*t) >= 150));

    let stats = bulk_delete(&store, &mut |t| index_of(t).is_multiple_of(2)).expect("vacuum");
    assert_eq!((stats.deleted, stats.freed), (100 - flagged, 100));
    let report = check(&store).expect("check");
    assert_eq!((report.live_items, report.free_items), (100, 100));
    let left: HashSet<usize> = all_results(&store, q)
        .iter()
        .map(|(t, _)| index_of(*t))
        .collect();
    assert_eq!(left, (0..200).filter(|i| i % 2 == 1).collect());
}

/// An insert cut off after storing its record and reaching some of the trees
/// leaves a consistent index: `check` passes (counting the item incomplete),
/// and VACUUM removes the item once its row is dead.
#[test]
fn insert_cut_off_between_trees_is_consistent() {
    let mut gen = Clustered::new(4, 20);
    let data = gen.items(120);
    // Writes of an insert: metapage, item page, then one leaf per tree (3).
    for fail_at in 3..=5 {
        let (inner, _) = build_index(&data[..100], Metric::L2, small_options());
        let store = TestStore {
            fail_at,
            ..TestStore::new(inner)
        };
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            insert(&store, tid(100), &data[100])
        }));
        assert!(crashed.is_err());
        let report = check(&store.inner).expect("check after the cut-off insert");
        assert_eq!(
            (report.live_items, report.incomplete_items),
            (101, 1),
            "fail_at {fail_at}"
        );
        let found = all_results(&store.inner, &data[100])
            .iter()
            .any(|(t, _)| *t == tid(100));
        assert_eq!(found, fail_at > 3, "found through the trees it reached");

        let stats = bulk_delete(&store.inner, &mut |t| t == tid(100)).expect("vacuum");
        assert_eq!((stats.deleted, stats.freed), (1, 1));
        let report = check(&store.inner).expect("check after vacuum");
        assert_eq!((report.live_items, report.incomplete_items), (100, 0));
        // A completed insert is not incomplete.
        insert(&store.inner, tid(101), &data[101]).expect("insert");
        assert_eq!(check(&store.inner).expect("check").incomplete_items, 0);
    }
}

/// A page allocated by a change that a crash cut off before anything linked
/// to it is wasted space that `check` counts, not corruption.
#[test]
fn unlinked_page_is_counted_not_an_error() {
    let mut gen = Clustered::new(4, 21);
    let data = gen.items(60);
    let (store, _) = build_index(&data, Metric::L2, small_options());
    assert_eq!(check(&store).expect("check").unused_pages, 0);
    drop(store.allocate(PageKind::Leaf));
    assert_eq!(check(&store).expect("check").unused_pages, 1);
}

#[test]
fn check_detects_free_list_corruption() {
    let build_and_free = || {
        let mut gen = Clustered::new(4, 19);
        let data = gen.items(120);
        let (store, _) = build_index(&data, Metric::L2, small_options());
        bulk_delete(&store, &mut |t| index_of(t).is_multiple_of(4)).expect("vacuum");
        check(&store).expect("intact");
        let meta = MetaHeader::read(&store.read(0));
        (store, meta)
    };
    // The head's link (its tid field) points elsewhere.
    let (store, meta) = build_and_free();
    flip(&store, meta.free_block, meta.free_offset as usize + 4);
    assert!(check(&store).is_err(), "free link");
    // The free count disagrees with the list.
    let (store, meta) = build_and_free();
    let mut page = store.write(0);
    MetaHeader {
        free_count: meta.free_count - 1,
        ..meta
    }
    .write(&mut page);
    drop(page);
    assert!(check(&store).is_err(), "free count");
    // A record flagged free but not deleted.
    let (store, meta) = build_and_free();
    let at = meta.free_offset as usize;
    let mut page = store.write(meta.free_block);
    let record = ItemRecordHeader::read(&page[at..]);
    ItemRecordHeader {
        flags: ITEM_FREE,
        ..record
    }
    .write(&mut page[at..]);
    drop(page);
    assert!(check(&store).is_err(), "free flag without deleted");
}

#[test]
fn tree_cycle_is_reported_not_followed_forever() {
    let mut gen = Clustered::new(4, 16);
    let data = gen.items(120);
    let (store, _) = build_index(&data, Metric::L2, small_options());
    let split = (1..store.nblocks())
        .find(|&b| store.kind(b) == Some(PageKind::Split))
        .expect("split page");
    // Split node 0's left child becomes the node itself.
    NodeRef::split(split, 0).write(&mut store.write(split)[SplitPageHeader::SIZE..]);
    assert!(check(&store).is_err());
    let results: Vec<_> = Searcher::new(&store, &data[0], SearchParams::default())
        .expect("meta ok")
        .collect();
    assert!(results.last().is_some_and(|r| r.is_err()));
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert!(bulk_delete(&store, &mut |_| true).is_err());
}

/// Inner product where norms vary (×0.5 to ×1.5): the top results by inner
/// product are far from the query in L2, which the L2 trees reach less well.
/// Known gap (README: measured 0.82 with defaults); this guards against
/// regressions below it.
#[test]
#[cfg_attr(debug_assertions, ignore = "slow in debug builds; run with --release")]
fn recall_inner_product_varied_norms() {
    let mut gen = Clustered::new(100, 43);
    let mut rng = imgsim_forest::space::Rng::new(5);
    let data: Vec<Vec<f16>> = gen
        .items(20_000)
        .into_iter()
        .map(|v| {
            let s = 0.5 + rng.below(1001) as f32 / 1000.0;
            v.iter().map(|x| f16::from_f32(x.to_f32() * s)).collect()
        })
        .collect();
    let queries = gen.queries(100);
    let (store, _) = build_index(&data, Metric::InnerProduct, Options::default());
    let mut total = 0.0;
    let mut l2_overlap = 0.0;
    for q in &queries {
        let truth = brute_force(Metric::InnerProduct, &data, q, 10);
        l2_overlap += recall(&truth, &brute_force(Metric::L2, &data, q, 10));
        let found: Vec<usize> = search(&store, q, SearchParams::default(), 10)
            .iter()
            .map(|(t, _)| index_of(*t))
            .collect();
        total += recall(&truth, &found);
    }
    let (r, overlap) = (
        total / queries.len() as f64,
        l2_overlap / queries.len() as f64,
    );
    eprintln!("inner product (varied norms) recall@10 {r}, overlap with L2 top-10 {overlap}");
    assert!(overlap < 0.5, "norms too uniform for this test: {overlap}");
    assert!(r >= 0.8, "inner product recall@10 {r}");
}

/// An index of another on-disk format version is reported as such (the glue
/// says "REINDEX" with 0A000), not as damage.
#[test]
fn other_format_version_is_not_corruption() {
    let mut gen = Clustered::new(4, 23);
    let data = gen.items(50);
    let (store, _) = build_index(&data, Metric::L2, small_options());
    let mut meta = MetaHeader::read(&store.read(0));
    meta.version = FORMAT_VERSION - 1;
    meta.write(&mut store.write(0));
    let err = check(&store).expect_err("old version refused");
    assert_eq!(err.old_format, Some(FORMAT_VERSION - 1), "{err}");
    let err = Searcher::new(&store, &data[0], SearchParams::default())
        .err()
        .expect("search refused");
    assert_eq!(err.old_format, Some(FORMAT_VERSION - 1));
    // Real damage is not an old format.
    meta.version = FORMAT_VERSION;
    meta.basis_checksum ^= 1;
    meta.write(&mut store.write(0));
    assert_eq!(
        check(&store).expect_err("bad basis checksum").old_format,
        None
    );
}

/// `WHERE category = c ORDER BY distance LIMIT 10` as the executor runs it:
/// rows are taken from the scan until ten pass the filter. At 1 %, 10 % and
/// 50 % selectivity the rows found are the exact filtered top 10.
#[test]
#[cfg_attr(debug_assertions, ignore = "slow in debug builds; run with --release")]
fn filtered_scans_find_the_filtered_neighbours() {
    let mut gen = Clustered::new(100, 47);
    let data = gen.items(20_000);
    let queries = gen.queries(40);
    let (store, _) = build_index(&data, Metric::L2, Options::default());
    for (name, passes) in [("1%", 100usize), ("10%", 10), ("50%", 2)] {
        let mut total = 0.0;
        for (qi, q) in queries.iter().enumerate() {
            let category = qi % passes;
            let matches = |i: usize| i % passes == category;
            let truth: Vec<usize> = brute_force(Metric::L2, &data, q, data.len())
                .into_iter()
                .filter(|&i| matches(i))
                .take(10)
                .collect();
            let found: Vec<usize> = Searcher::new(&store, q, SearchParams::default())
                .expect("searcher")
                .map(|r| index_of(r.expect("search").0))
                .filter(|&i| matches(i))
                .take(10)
                .collect();
            total += recall(&truth, &found);
        }
        let r = total / queries.len() as f64;
        eprintln!("filtered recall@10 at {name}: {r}");
        assert!(r >= 0.95, "filtered recall@10 at {name}: {r}");
    }
}

#[test]
fn the_metapage_is_never_taken_for_another_page() {
    let data = Clustered::new(5, 3).items(200);
    let (store, _) = build_index(&data, Metric::L2, Options::default());
    assert!(store.is_page_of(0, PageKind::Meta));
    // A damaged kind byte on block 0 does not make it a leaf or an item
    // page for readers or writers that follow a pointer to it.
    for kind in [
        PageKind::Leaf,
        PageKind::Item,
        PageKind::Split,
        PageKind::Basis,
    ] {
        store.set_kind(0, kind as u8);
        assert!(!store.is_page_of(0, kind), "{kind:?}");
        assert!(store.read_kind(0, kind).is_none(), "{kind:?}");
    }
    // Elsewhere the kind byte decides.
    let leaf = (1..store.nblocks())
        .find(|&b| store.kind(b) == Some(PageKind::Leaf))
        .expect("a leaf page");
    assert!(store.is_page_of(leaf, PageKind::Leaf));
    assert!(!store.is_page_of(leaf, PageKind::Item));
    assert!(!store.is_page_of(store.nblocks(), PageKind::Leaf));
}

/// Run once on the store by a [`TestStore`].
type Hook<'h> = Box<dyn FnOnce(&MemStore) + 'h>;

/// A [`MemStore`] with two instruments: `write` panics on its `fail_at`-th
/// call (0: never), as a crash would cut a change short between two WAL
/// records; and `hook` runs once just before the first read of block
/// `hook_at` (while the reader holds no page).
struct TestStore<'h> {
    inner: MemStore,
    writes: std::cell::Cell<usize>,
    fail_at: usize,
    hook_at: u32,
    hook: std::cell::RefCell<Option<Hook<'h>>>,
    /// Pages read so far.
    reads: std::cell::Cell<usize>,
}

impl TestStore<'_> {
    fn new(inner: MemStore) -> Self {
        TestStore {
            inner,
            writes: std::cell::Cell::new(0),
            fail_at: 0,
            hook_at: 0,
            hook: std::cell::RefCell::new(None),
            reads: std::cell::Cell::new(0),
        }
    }
}

impl PageStore for TestStore<'_> {
    type Read<'a>
        = <MemStore as PageStore>::Read<'a>
    where
        Self: 'a;
    type Write<'a>
        = <MemStore as PageStore>::Write<'a>
    where
        Self: 'a;
    fn body_size(&self) -> usize {
        self.inner.body_size()
    }
    fn nblocks(&self) -> u32 {
        self.inner.nblocks()
    }
    fn kind(&self, blk: u32) -> Option<PageKind> {
        self.inner.kind(blk)
    }
    fn read(&self, blk: u32) -> Self::Read<'_> {
        self.reads.set(self.reads.get() + 1);
        if blk == self.hook_at {
            if let Some(hook) = self.hook.borrow_mut().take() {
                hook(&self.inner);
            }
        }
        self.inner.read(blk)
    }
    fn write(&self, blk: u32) -> Self::Write<'_> {
        self.writes.set(self.writes.get() + 1);
        assert!(self.writes.get() != self.fail_at, "crash");
        self.inner.write(blk)
    }
    fn try_write(&self, blk: u32) -> Option<Self::Write<'_>> {
        Some(self.write(blk))
    }
    fn allocate(&self, kind: PageKind) -> (u32, Self::Write<'_>) {
        self.inner.allocate(kind)
    }
    fn extend(&self, kind: PageKind) -> (u32, Self::Write<'_>) {
        self.inner.extend(kind)
    }
    fn allocate_at(&self, blk: u32, kind: PageKind) -> Self::Write<'_> {
        self.inner.allocate_at(blk, kind)
    }
    fn free(&self, blk: u32) {
        self.inner.free(blk)
    }
    fn truncate(&self, nblocks: u32) {
        self.inner.truncate(nblocks)
    }
}

/// VACUUM's tree walk reaches a leaf that inserts split in place after the
/// walk had read its parent: the entries that moved to the new leaf are
/// found too, so no entry of a dead item survives its record being freed.
#[test]
fn vacuum_follows_a_leaf_split_while_it_walks() {
    let mut gen = Clustered::new(4, 31);
    let data = gen.items(200);
    let options = Options {
        trees: 1,
        leaf_size: 8,
        reduced_dims: 32,
        rebuild_rows: 0,
        ..Options::default()
    };
    let (store, _) = build_index(&data, Metric::L2, options);
    // The first leaf on the left edge of the tree (its parent a split node).
    let meta = MetaHeader::read(&store.read(0));
    let mut node = NodeRef::read(&store.read(0)[META_ROOTS_OFFSET..]);
    let mut normal = vec![0f32; meta.reduced_dims as usize];
    while node.kind == NODE_SPLIT {
        let page = store.read(node.block);
        let at = SplitPageHeader::SIZE + node.slot as usize * split_node_bytes(32);
        node = read_split_node(&page[at..], &mut normal).left;
    }
    let leaf_page = store.read(node.block);
    let count = LeafPageHeader::read(&leaf_page).count as usize;
    let entry = |k: usize| {
        LeafEntryHeader::read(&leaf_page[LeafPageHeader::SIZE + k * leaf_entry_bytes(32)..])
    };
    let tid_at = |e: LeafEntryHeader| {
        let page = store.read(e.item_block);
        Tid::from_bytes(ItemRecordHeader::read(&page[e.item_offset as usize..]).tid)
    };
    let in_leaf: Vec<usize> = (0..count).map(|k| index_of(tid_at(entry(k)))).collect();
    drop(leaf_page);
    let capacity = leaf_capacity(store.body_size(), 32);

    // Just before the walk reads the leaf, copies of its first item fill it
    // past capacity: it splits in place, moving entries to a new leaf.
    let copy = data[in_leaf[0]].clone();
    let hooked = TestStore {
        hook_at: node.block,
        hook: std::cell::RefCell::new(Some(Box::new(move |s: &MemStore| {
            for i in 0..=capacity - count {
                insert(s, tid(1000 + i), &copy).expect("insert");
            }
        }))),
        ..TestStore::new(store)
    };
    let dead: HashSet<usize> = in_leaf.iter().copied().collect();
    let stats = bulk_delete(&hooked, &mut |t| dead.contains(&index_of(t))).expect("vacuum");
    assert!(hooked.hook.borrow().is_none(), "the walk read the leaf");
    assert_eq!(stats.deleted as usize, dead.len());
    assert_eq!(stats.leaf_entries_removed as usize, dead.len());
    let store = hooked.inner;
    let version = LeafPageHeader::read(&store.read(node.block)).version;
    assert_ne!(version, node.slot, "the leaf was split in place meanwhile");
    let report = check(&store).expect("no entry of a freed record is left");
    assert_eq!(
        report.live_items as usize,
        200 - dead.len() + capacity - count + 1
    );
    assert!(all_results(&store, &data[in_leaf[0]])
        .iter()
        .all(|(t, _)| !dead.contains(&index_of(*t))));
}
