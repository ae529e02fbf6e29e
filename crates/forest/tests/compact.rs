//! The compaction at the end of VACUUM (`imgsim_forest::compact`).
mod common;

use std::cell::{Cell, Ref, RefMut};
use std::collections::HashSet;

use common::*;
use half::f16;
use imgsim_forest::compact::{fresh_pages, wants_compaction};
use imgsim_forest::format::{MetaHeader, OnDisk};
use imgsim_forest::search::exact_distance;
use imgsim_forest::{
    build, bulk_delete, check, compact, insert, CompactStats, MemStore, Metric, Options, PageKind,
    PageStore, SearchParams, Searcher,
};

const BUDGET: usize = 1 << 30;

fn options(trees: u32, reduced_dims: u32) -> Options {
    Options {
        trees,
        reduced_dims,
        rebuild_rows: 0,
        ..Options::default()
    }
}

/// Rows whose vectors are replaced by updates, as a heap keeps them: each
/// version has its own TID (its index in `versions`).
struct Table {
    versions: Vec<Vec<f16>>,
    /// The live version of each row.
    rows: Vec<usize>,
    options: Options,
}

impl Table {
    fn new(data: Vec<Vec<f16>>, options: Options) -> (Self, MemStore) {
        let table = Table {
            rows: (0..data.len()).collect(),
            versions: data,
            options,
        };
        let store = table.fresh_build();
        (table, store)
    }

    /// A fresh build on the live versions.
    fn fresh_build(&self) -> MemStore {
        let store = MemStore::postgres_sized();
        let items = self
            .rows
            .iter()
            .map(|&v| (tid(v), self.versions[v].as_slice()));
        build(
            &store,
            self.options,
            Metric::L2,
            items,
            BUDGET,
            &mut |_, _, _| {},
        )
        .expect("build");
        store
    }

    /// `UPDATE` of rows `rows` to new vectors, then VACUUM's bulk delete of
    /// the old versions.
    fn update(&mut self, store: &MemStore, gen: &mut Clustered, rows: std::ops::Range<usize>) {
        let mut dead = HashSet::new();
        for row in rows {
            let v = self.versions.len();
            self.versions.push(gen.sample(0.05));
            insert(store, tid(v), &self.versions[v]).expect("insert");
            dead.insert(tid(self.rows[row]));
            self.rows[row] = v;
        }
        bulk_delete(store, &mut |t| dead.contains(&t)).expect("bulk delete");
    }

    /// Every live version and no other is found, each once, with its exact
    /// distance to the query.
    fn assert_found_exactly(&self, store: &MemStore, q: &[f16]) {
        let qn = imgsim_kernels::norm_squared(q);
        let mut found = HashSet::new();
        for result in Searcher::new(store, q, SearchParams::default()).expect("searcher") {
            let (t, distance) = result.expect("search");
            let v = index_of(t);
            assert!(found.insert(v), "version {v} found twice");
            let x = &self.versions[v];
            let exact = exact_distance(Metric::L2, q, qn, x, imgsim_kernels::norm_squared(x));
            assert!(
                (distance - exact).abs() <= 1e-5 * exact.max(1.0),
                "version {v}: distance {distance}, exact {exact}"
            );
        }
        let live: HashSet<usize> = self.rows.iter().copied().collect();
        assert_eq!(found, live, "search finds exactly the live versions");
    }

    /// Mean recall@10 against brute force over the live versions.
    fn recall(&self, store: &MemStore, queries: &[Vec<f16>]) -> f64 {
        let live: Vec<Vec<f16>> = self
            .rows
            .iter()
            .map(|&v| self.versions[v].clone())
            .collect();
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
                let truth: Vec<usize> = brute_force(Metric::L2, &live, q, 10)
                    .into_iter()
                    .map(|i| self.rows[i])
                    .collect();
                recall(&truth, &found)
            })
            .sum();
        total / queries.len() as f64
    }
}

fn meta(store: &MemStore) -> MetaHeader {
    MetaHeader::read(&store.read(0))
}

fn compact_now(store: &MemStore) -> Option<CompactStats> {
    compact(store, 1, || {}, &mut |_, _, _| {}, &mut || true).expect("compact")
}

/// Rounds of updating every row and vacuuming: each compaction brings the
/// index back to a fresh build's size, every live version is found with its
/// exact distance and no old one, recall stays a fresh build's, and `check`
/// passes with no page wasted.
#[test]
fn rounds_of_updates_stay_near_a_fresh_build() {
    let mut gen = Clustered::new(8, 31);
    let (mut table, store) = Table::new(gen.items(1200), options(4, 64));
    let queries = gen.queries(30);
    for round in 0..4 {
        table.update(&store, &mut gen, 0..1200);
        let bloated = store.nblocks();
        assert!(wants_compaction(&store).expect("meta"), "round {round}");
        let stats = compact_now(&store).expect("due");
        let fresh = table.fresh_build();
        assert_eq!(stats.items, 1200);
        assert!(stats.finished);
        assert_eq!(stats.pages_before, bloated);
        assert_eq!(stats.pages_after, store.nblocks());
        assert!(
            f64::from(store.nblocks()) <= 1.05 * f64::from(fresh.nblocks()),
            "round {round}: {bloated} pages compacted to {}, fresh build {}",
            store.nblocks(),
            fresh.nblocks()
        );
        let report = check(&store).expect("check");
        assert_eq!(report.live_items, 1200);
        assert_eq!(report.items, 1200, "the chain holds only live records");
        assert_eq!((report.deleted_items, report.incomplete_items), (0, 0));
        assert_eq!(report.unused_pages, 0);
        assert_eq!(report.leaf_entries, 4 * 1200);
        for q in &queries[..3] {
            table.assert_found_exactly(&store, q);
        }
        let (compacted, fresh) = (
            table.recall(&store, &queries),
            table.recall(&fresh, &queries),
        );
        assert!(
            compacted >= fresh - 0.03,
            "round {round}: recall {compacted}, fresh build {fresh}"
        );
        assert!(!wants_compaction(&store).expect("meta"));
    }
}

/// Updates of a few rows between VACUUMs refill the free slots: no
/// compaction is due until the waste passes the threshold, and inserts
/// after a compaction grow the index from its new end.
#[test]
fn small_waste_is_left_alone() {
    let mut gen = Clustered::new(8, 32);
    let (mut table, store) = Table::new(gen.items(1000), options(4, 64));
    table.update(&store, &mut gen, 0..100);
    assert!(compact_now(&store).is_none(), "10 % of the rows updated");
    table.update(&store, &mut gen, 100..1000);
    let stats = compact_now(&store).expect("due");
    assert!(stats.pages_after < stats.pages_before * 3 / 4, "{stats:?}");
    table.update(&store, &mut gen, 0..50);
    let report = check(&store).expect("check");
    assert_eq!(report.live_items, 1000);
    table.assert_found_exactly(&store, &gen.queries(1)[0]);
}

/// Deleting half the rows: the compaction moves the live records of the
/// chain's tail into the slots the deleted ones freed and truncates.
#[test]
fn deletes_are_given_back() {
    let mut gen = Clustered::new(8, 33);
    let (mut table, store) = Table::new(gen.items(1000), options(4, 64));
    let before = store.nblocks();
    // Every other row goes: free slots all along the chain.
    let dead: HashSet<_> = (0..1000).step_by(2).map(tid).collect();
    bulk_delete(&store, &mut |t| dead.contains(&t)).expect("bulk delete");
    table.rows.retain(|&v| v % 2 == 1);
    let stats = compact_now(&store).expect("due");
    assert!(stats.moved > 200, "{stats:?}");
    let fresh = table.fresh_build();
    assert!(
        f64::from(store.nblocks()) <= 1.05 * f64::from(fresh.nblocks()),
        "{before} pages compacted to {}, fresh build {}",
        store.nblocks(),
        fresh.nblocks()
    );
    let report = check(&store).expect("check");
    assert_eq!((report.live_items, report.items), (500, 500));
    table.assert_found_exactly(&store, &gen.queries(1)[0]);
    // Inserts go on from the new end of the chain.
    table.update(&store, &mut gen, 0..500);
    check(&store).expect("check after more updates");
    table.assert_found_exactly(&store, &gen.queries(1)[0]);
}

/// A compaction that gives up when `keep_going` says so (another session
/// waits for the index) leaves a valid index, and the next one finishes.
#[test]
fn a_compaction_given_up_leaves_a_valid_index() {
    let mut gen = Clustered::new(8, 36);
    let q = gen.queries(1).remove(0);
    for asked in [0, 1, 5, 19] {
        let (mut table, store) = Table::new(gen.items(1200), options(4, 64));
        table.update(&store, &mut gen, 0..1200);
        let bloated = store.nblocks();
        let mut calls = 0;
        let mut keep_going = || {
            calls += 1;
            calls <= asked
        };
        let stats = compact(&store, 1, || {}, &mut |_, _, _| {}, &mut keep_going)
            .expect("compact")
            .expect("due");
        assert!(!stats.finished, "given up after {asked} checks");
        assert!(store.nblocks() >= bloated);
        check(&store).unwrap_or_else(|e| panic!("given up after {asked} checks: {e}"));
        table.assert_found_exactly(&store, &q);
        let stats = compact_now(&store).expect("still due");
        assert!(stats.finished);
        let fresh = table.fresh_build();
        assert!(
            f64::from(store.nblocks()) <= 1.05 * f64::from(fresh.nblocks()),
            "given up after {asked} checks, then {} pages, fresh build {}",
            store.nblocks(),
            fresh.nblocks()
        );
        assert_eq!(check(&store).expect("check").items, 1200);
        table.assert_found_exactly(&store, &q);
    }
}

/// An insert cut off before it reached any tree leaves its record flagged
/// and in no leaf: the compaction (which takes the other codes from the old
/// leaves) codes it from its vector, and the new trees reach it.
#[test]
fn an_item_in_no_tree_is_coded_from_its_vector() {
    let mut gen = Clustered::new(8, 37);
    let (mut table, store) = Table::new(gen.items(600), options(4, 64));
    table.update(&store, &mut gen, 0..600);
    let v = table.versions.len();
    table.versions.push(gen.sample(0.05));
    let cut_off = (1..10).find(|&changes| {
        let failing = Failing {
            inner: &store,
            left: Cell::new(changes),
        };
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let insert = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            insert(&failing, tid(v), &table.versions[v])
        }));
        std::panic::set_hook(quiet);
        assert!(
            insert.is_err(),
            "the insert takes more than {changes} changes"
        );
        check(&store).expect("check").incomplete_items == 1
    });
    assert!(
        cut_off.is_some(),
        "no insert stopped after storing its record"
    );
    let report = check(&store).expect("check");
    assert_eq!(
        report.leaf_entries,
        4 * 600,
        "the cut-off item is in no leaf"
    );
    table.rows.push(v);
    compact_now(&store).expect("due");
    let report = check(&store).expect("check");
    assert_eq!((report.live_items, report.incomplete_items), (601, 0));
    assert_eq!(report.leaf_entries, 4 * 601);
    table.assert_found_exactly(&store, &gen.queries(1)[0]);
}

/// The estimate of a fresh build's size is within 10 % of real builds.
#[test]
fn fresh_pages_estimates_a_fresh_build() {
    let mut gen = Clustered::new(12, 34);
    let data = gen.items(3000);
    let cases = [
        (3000, 4, 64, 0),
        (3000, 16, 256, 0),
        (800, 8, 128, 0),
        (3000, 2, 1024, 0),
        (3000, 4, 64, 8),
    ];
    for (n, trees, dims, leaf_size) in cases {
        let options = Options {
            leaf_size,
            ..options(trees, dims)
        };
        let (_, store) = Table::new(data[..n].to_vec(), options);
        let estimate = fresh_pages(&meta(&store), store.body_size()) as f64;
        let actual = f64::from(store.nblocks());
        assert!(
            (estimate / actual - 1.0).abs() < 0.1,
            "{n} items, {trees} trees, {dims} dims, leaf_size {leaf_size}: estimate {estimate}, build {actual}"
        );
    }
}

/// A store that fails (panics, as a crash or an ERROR would stop the
/// compaction) at its `left`-th change: a page written, allocated, freed or
/// the store truncated.
struct Failing<'a> {
    inner: &'a MemStore,
    left: Cell<u64>,
}

impl Failing<'_> {
    fn tick(&self) {
        let left = self.left.get();
        if left == 0 {
            std::panic::panic_any("crash");
        }
        self.left.set(left - 1);
    }
}

impl PageStore for Failing<'_> {
    type Read<'b>
        = Ref<'b, [u8]>
    where
        Self: 'b;
    type Write<'b>
        = RefMut<'b, [u8]>
    where
        Self: 'b;

    fn body_size(&self) -> usize {
        self.inner.body_size()
    }
    fn nblocks(&self) -> u32 {
        self.inner.nblocks()
    }
    fn kind(&self, blk: u32) -> Option<PageKind> {
        self.inner.kind(blk)
    }
    fn read(&self, blk: u32) -> Ref<'_, [u8]> {
        self.inner.read(blk)
    }
    fn write(&self, blk: u32) -> RefMut<'_, [u8]> {
        self.tick();
        self.inner.write(blk)
    }
    fn try_write(&self, blk: u32) -> Option<RefMut<'_, [u8]>> {
        self.tick();
        self.inner.try_write(blk)
    }
    fn allocate(&self, kind: PageKind) -> (u32, RefMut<'_, [u8]>) {
        self.tick();
        self.inner.allocate(kind)
    }
    fn extend(&self, kind: PageKind) -> (u32, RefMut<'_, [u8]>) {
        self.tick();
        self.inner.extend(kind)
    }
    fn allocate_at(&self, blk: u32, kind: PageKind) -> RefMut<'_, [u8]> {
        self.tick();
        self.inner.allocate_at(blk, kind)
    }
    fn free(&self, blk: u32) {
        self.tick();
        self.inner.free(blk)
    }
    fn truncate(&self, nblocks: u32) {
        self.tick();
        self.inner.truncate(nblocks)
    }
}

/// A compaction stopped at any of its changes leaves a valid index that
/// finds every live row once and no dead one; the next compaction gives
/// back what it left.
#[test]
fn a_compaction_cut_off_anywhere_leaves_a_valid_index() {
    let scenario = || {
        let mut gen = Clustered::new(4, 35);
        let (mut table, store) = Table::new(gen.items(150), options(2, 32));
        table.update(&store, &mut gen, 0..150);
        let q = gen.queries(1).remove(0);
        (table, store, q)
    };
    let changes = {
        let (_, store, _) = scenario();
        let failing = Failing {
            inner: &store,
            left: Cell::new(u64::MAX),
        };
        compact(&failing, 1, || {}, &mut |_, _, _| {}, &mut || true).expect("compact");
        u64::MAX - failing.left.get()
    };
    assert!(changes > 500, "{changes} changes");
    // The injected failures are expected: keep their messages out of the output.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"crash") {
            report(info);
        }
    }));
    // Every change near the ends and the switch, a spread in between.
    let points: Vec<u64> = (0..changes)
        .filter(|&k| k < 20 || k + 60 > changes || k % 4 == 0)
        .collect();
    for k in points {
        let (table, store, q) = scenario();
        let failing = Failing {
            inner: &store,
            left: Cell::new(k),
        };
        let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            compact(&failing, 1, || {}, &mut |_, _, _| {}, &mut || true)
        }));
        assert!(cut.is_err(), "change {k} of {changes}");
        let report = check(&store).unwrap_or_else(|e| panic!("cut at change {k}: {e}"));
        assert!(report.live_items >= 150, "cut at change {k}: {report:?}");
        table.assert_found_exactly(&store, &q);

        // Due again (the metapage says one was under way) unless it got
        // as far as the truncation.
        compact_now(&store);
        let report = check(&store).unwrap_or_else(|e| panic!("after change {k}: {e}"));
        assert_eq!(report.live_items, 150, "after change {k}");
        table.assert_found_exactly(&store, &q);
        let fresh = table.fresh_build();
        assert!(
            f64::from(store.nblocks()) <= 1.1 * f64::from(fresh.nblocks()),
            "cut at change {k}: {} pages, fresh build {}",
            store.nblocks(),
            fresh.nblocks()
        );
    }
}
