//! Build time, index size and recall@10 / latency vs search parameters on
//! clustered 2048-d data.
//!
//! cargo run --release --example bench -- [items] [queries] [reduced_dims,..] [trees,..] [metric] [search_k,..] [rerank,..]
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use half::f16;
use imgsim_forest::search::exact_distance;
use imgsim_forest::{
    build, check, MemStore, Metric, Options, PageKind, PageStore, SearchParams, Searcher,
};

/// CPU time of this thread in ns: robust to other processes on the machine.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the whole process (all threads) in seconds.
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|x| x.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

fn list(arg: Option<String>, default: &[u32]) -> Vec<u32> {
    arg.map_or(default.to_vec(), |s| {
        s.split(',').map(|x| x.parse().expect("number")).collect()
    })
}

fn truth(metric: Metric, data: &[Vec<f16>], q: &[f16], k: usize) -> Vec<usize> {
    truth_where(metric, data, q, k, |_| true)
}

/// The exact top `k` among the items `passes` keeps.
fn truth_where(
    metric: Metric,
    data: &[Vec<f16>],
    q: &[f16],
    k: usize,
    passes: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let qn = imgsim_kernels::norm_squared(q);
    let mut d: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .filter(|&(i, _)| passes(i))
        .map(|(i, x)| {
            (
                exact_distance(metric, q, qn, x, imgsim_kernels::norm_squared(x)),
                i,
            )
        })
        .collect();
    d.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0));
    d.truncate(k);
    d.into_iter().map(|(_, i)| i).collect()
}

/// An item's category in 0..100, from a hash of its number.
fn category(i: usize) -> usize {
    ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % 100
}

fn save_cache(path: &str, data: &[Vec<f16>], queries: &[Vec<f16>], truths: &[Vec<usize>]) {
    let mut out = Vec::new();
    for n in [data.len(), queries.len()] {
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    for v in data.iter().chain(queries) {
        v.iter()
            .for_each(|h| out.extend_from_slice(&h.to_le_bytes()));
    }
    for t in truths {
        t.iter()
            .for_each(|&i| out.extend_from_slice(&(i as u32).to_le_bytes()));
    }
    std::fs::write(path, out).expect("write cache");
}

type Cached = (Vec<Vec<f16>>, Vec<Vec<f16>>, Vec<Vec<usize>>);

fn load_cache(path: &str) -> Option<Cached> {
    let b = std::fs::read(path).ok()?;
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes")) as usize;
    let (n, nq) = (word(0), word(8));
    let mut at = 16;
    let mut vectors = |count: usize| -> Vec<Vec<f16>> {
        (0..count)
            .map(|_| {
                let v = b[at..at + 2 * DIMS]
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect();
                at += 2 * DIMS;
                v
            })
            .collect()
    };
    let data = vectors(n);
    let queries = vectors(nq);
    let truths = (0..nq)
        .map(|q| {
            (0..10)
                .map(|k| {
                    let i = at + 4 * (q * 10 + k);
                    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as usize
                })
                .collect()
        })
        .collect();
    Some((data, queries, truths))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(100_000, |s| s.parse().expect("items"));
    let nq: usize = args.next().map_or(200, |s| s.parse().expect("queries"));
    let dims = list(args.next(), &[256]);
    let trees = list(args.next(), &[8]);
    let metric = match args.next().as_deref() {
        None | Some("l2") => Metric::L2,
        Some("cosine") => Metric::Cosine,
        Some("ip") => Metric::InnerProduct,
        Some(m) => panic!("unknown metric {m}"),
    };
    let search_ks = list(args.next(), &[500, 1000, 2000, 4000, 8000]);
    let reranks = list(args.next(), &[20, 40, 60, 100]);
    println!("kernel: {}", imgsim_kernels::implementation());
    // BENCH_SET=hard: the manifold set (BENCH_RANK, default 128); else
    // the clustered set, BENCH_RANKS=lo,hi its within-cluster ranks.
    // BENCH_CACHE=FILE keeps items, queries and truths between runs.
    let cache = std::env::var("BENCH_CACHE").ok();
    let (data, queries, truths) = match cache.as_deref().and_then(load_cache) {
        Some(cached) => cached,
        None => {
            let (data, queries) = if std::env::var("BENCH_SET").as_deref() == Ok("hard") {
                let rank = std::env::var("BENCH_RANK").map_or(128, |s| s.parse().expect("rank"));
                println!(
                    "manifold set, latent rank {rank}, {} clusters",
                    (n / 100).max(10)
                );
                let mut gen = Manifold::new((n / 100).max(10), rank, 42);
                let data = gen.items(n);
                (data, gen.items(nq))
            } else {
                let ranks = list(std::env::var("BENCH_RANKS").ok(), &[8, 33]);
                println!("within-cluster ranks {}..{}", ranks[0], ranks[1]);
                let mut gen = Clustered::with_ranks(
                    (n / 200).max(10),
                    42,
                    ranks[0] as usize..ranks[1] as usize,
                );
                let data = gen.items(n);
                (data, gen.queries(nq))
            };
            let t = Instant::now();
            let truths: Vec<Vec<usize>> = queries
                .iter()
                .map(|q| truth(metric, &data, q, 10))
                .collect();
            println!(
                "brute force: {:.2} ms/query",
                t.elapsed().as_secs_f64() * 1e3 / nq as f64
            );
            if let Some(path) = &cache {
                save_cache(path, &data, &queries, &truths);
            }
            (data, queries, truths)
        }
    };
    let (n, nq) = (data.len(), queries.len());
    println!("{n} items, {nq} queries");
    // BENCH_FILTER_PERCENT=P: a filtered query (an item passes with
    // probability P %, by a hash of its number) against the exact filtered top 10.
    let filter_percent: Option<usize> = std::env::var("BENCH_FILTER_PERCENT")
        .ok()
        .map(|s| s.parse().expect("percent"));
    let passes = |i: usize| filter_percent.is_none_or(|p| category(i) < p);
    let truths: Vec<Vec<usize>> = match filter_percent {
        None => truths,
        Some(p) => {
            let truths = queries
                .iter()
                .map(|q| truth_where(metric, &data, q, 10, passes))
                .collect();
            println!("filtered to {p} % of the items");
            truths
        }
    };

    for &d in &dims {
        for &tr in &trees {
            // BENCH_SEED=S: another seed of the rotation and the splits, to
            // tell a change from the luck of one forest.
            let defaults = Options::default();
            let options = Options {
                trees: tr,
                reduced_dims: d,
                seed: std::env::var("BENCH_SEED")
                    .map_or(defaults.seed, |s| s.parse().expect("seed")),
                ..defaults
            };
            let store = MemStore::postgres_sized();
            let t = Instant::now();
            let mut last_phase: Option<(imgsim_forest::BuildPhase, Instant, f64)> = None;
            let build_cpu = process_cpu_s();
            // BENCH_BUILD_ROWS=T: build from the first T items, insert the
            // rest (an index created on a small table, then filled).
            let built_rows: usize = std::env::var("BENCH_BUILD_ROWS")
                .map_or(n, |s| s.parse().expect("rows"))
                .min(n);
            let items = data[..built_rows]
                .iter()
                .enumerate()
                .map(|(i, v)| (tid(i), v.as_slice()));
            let stats = build(
                &store,
                options,
                metric,
                items,
                usize::MAX,
                &mut |phase, _, _| {
                    if last_phase.as_ref().is_none_or(|(p, _, _)| *p != phase) {
                        if let Some((p, at, cpu)) = last_phase.take() {
                            print!(
                                "{p:?} {:.1}s ({:.1} cpu s), ",
                                at.elapsed().as_secs_f64(),
                                process_cpu_s() - cpu
                            );
                        }
                        last_phase = Some((phase, Instant::now(), process_cpu_s()));
                    }
                },
            )
            .expect("build");
            let inserts = Instant::now();
            let insert_cpu = process_cpu_s();
            for (i, v) in data.iter().enumerate().skip(built_rows) {
                imgsim_forest::insert(&store, tid(i), v).expect("insert");
            }
            if built_rows < n {
                println!(
                    "{} inserts {:.2}s ({:.2} cpu s)",
                    n - built_rows,
                    inserts.elapsed().as_secs_f64(),
                    process_cpu_s() - insert_cpu
                );
            }
            let build_s = t.elapsed().as_secs_f64();
            println!("build cpu {:.1}s", process_cpu_s() - build_cpu);
            println!(
                "\n{metric:?} D'={d} trees={tr}: build {build_s:.1}s, {} pages ({} item, {} leaf, {} split), {:.0} bytes/item",
                store.nblocks(),
                stats.item_pages,
                stats.leaf_pages,
                stats.split_pages,
                store.size_bytes() as f64 / n as f64
            );
            if n <= 20_000 {
                let t = Instant::now();
                check(&store).expect("check");
                println!("check {:.1}s", t.elapsed().as_secs_f64());
            }
            println!(
                "{:>8} {:>7} {:>9} {:>9} {:>9}  pages read/query: split leaf item",
                "search_k", "rerank", "recall@10", "ms/query", "cpu ms/q"
            );
            let counted = CountingStore {
                store: &store,
                reads: Default::default(),
            };
            for &search_k in &search_ks {
                for &rerank in &reranks {
                    let params = SearchParams {
                        search_k: search_k as usize,
                        rerank: rerank as usize,
                    };
                    counted.reads.iter().for_each(|c| c.set(0));
                    let t = Instant::now();
                    let cpu = cpu_ns();
                    let mut total = 0.0;
                    let mut rows = 0usize;
                    // BENCH_REPEAT=R: the queries R times (profiling).
                    let repeat =
                        std::env::var("BENCH_REPEAT").map_or(1, |s| s.parse().expect("repeat"));
                    let nq = nq * repeat;
                    for (q, tr) in queries.iter().zip(&truths).cycle().take(nq) {
                        let found: Vec<usize> = Searcher::new(&counted, q, params)
                            .expect("searcher")
                            .map(|r| index_of(r.expect("search").0))
                            .inspect(|_| rows += 1)
                            .filter(|&i| passes(i))
                            .take(10)
                            .collect();
                        total += recall(tr, &found);
                    }
                    let ms = t.elapsed().as_secs_f64() * 1e3 / nq as f64;
                    let cpu_ms = (cpu_ns() - cpu) as f64 / 1e6 / nq as f64;
                    let per_query =
                        |kind: PageKind| counted.reads[kind as usize].get() as f64 / nq as f64;
                    println!(
                        "{search_k:>8} {rerank:>7} {:>9.3} {ms:>9.3} {cpu_ms:>9.3}  {:>6.0} {:>5.0} {:>5.0}  rows {:.0}",
                        total / nq as f64,
                        per_query(PageKind::Split),
                        per_query(PageKind::Leaf),
                        per_query(PageKind::Item),
                        rows as f64 / nq as f64,
                    );
                }
            }
        }
    }
}

/// Counts the page reads of a search by page kind: in PostgreSQL each is a
/// buffer lookup, pin and lock, which is what a query pays beyond the arithmetic.
struct CountingStore<'a> {
    store: &'a MemStore,
    reads: [std::cell::Cell<u64>; 6],
}

impl PageStore for CountingStore<'_> {
    type Read<'r>
        = <MemStore as PageStore>::Read<'r>
    where
        Self: 'r;
    type Write<'w>
        = <MemStore as PageStore>::Write<'w>
    where
        Self: 'w;

    fn body_size(&self) -> usize {
        self.store.body_size()
    }
    fn nblocks(&self) -> u32 {
        self.store.nblocks()
    }
    fn kind(&self, blk: u32) -> Option<PageKind> {
        self.store.kind(blk)
    }
    fn prefetch(&self, blk: u32, offset: usize) {
        self.store.prefetch(blk, offset)
    }
    fn read(&self, blk: u32) -> Self::Read<'_> {
        if let Some(kind) = self.store.kind(blk) {
            let count = &self.reads[kind as usize];
            count.set(count.get() + 1);
        }
        self.store.read(blk)
    }
    fn write(&self, blk: u32) -> Self::Write<'_> {
        self.store.write(blk)
    }
    fn try_write(&self, blk: u32) -> Option<Self::Write<'_>> {
        self.store.try_write(blk)
    }
    fn allocate(&self, kind: PageKind) -> (u32, Self::Write<'_>) {
        self.store.allocate(kind)
    }
    fn extend(&self, kind: PageKind) -> (u32, Self::Write<'_>) {
        self.store.extend(kind)
    }
    fn allocate_at(&self, blk: u32, kind: PageKind) -> Self::Write<'_> {
        self.store.allocate_at(blk, kind)
    }
    fn free(&self, blk: u32) {
        self.store.free(blk)
    }
    fn truncate(&self, nblocks: u32) {
        self.store.truncate(nblocks)
    }
}
