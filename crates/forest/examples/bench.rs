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
use imgsim_forest::{build, check, MemStore, Metric, Options, PageStore, SearchParams, Searcher};

/// CPU time of this thread in ns: robust to other processes on the machine.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn list(arg: Option<String>, default: &[u32]) -> Vec<u32> {
    arg.map_or(default.to_vec(), |s| {
        s.split(',').map(|x| x.parse().expect("number")).collect()
    })
}

fn truth(metric: Metric, data: &[Vec<f16>], q: &[f16], k: usize) -> Vec<usize> {
    let qn = imgsim_kernels::norm_squared(q);
    let mut d: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
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
    let t = Instant::now();
    // BENCH_RANKS=lo,hi: within-cluster rank range (default 8,33).
    let ranks = list(std::env::var("BENCH_RANKS").ok(), &[8, 33]);
    println!("within-cluster ranks {}..{}", ranks[0], ranks[1]);
    let mut gen =
        Clustered::with_ranks((n / 200).max(10), 42, ranks[0] as usize..ranks[1] as usize);
    let data = gen.items(n);
    let queries = gen.queries(nq);
    println!(
        "generated {n} items, {nq} queries in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let truths: Vec<Vec<usize>> = queries
        .iter()
        .map(|q| truth(metric, &data, q, 10))
        .collect();
    let brute_ms = t.elapsed().as_secs_f64() * 1e3 / nq as f64;
    println!("brute force: {brute_ms:.2} ms/query");

    for &d in &dims {
        for &tr in &trees {
            let options = Options {
                trees: tr,
                reduced_dims: d,
                ..Options::default()
            };
            let store = MemStore::postgres_sized();
            let t = Instant::now();
            let items = data.iter().enumerate().map(|(i, v)| (tid(i), v.as_slice()));
            let stats = build(
                &store,
                options,
                metric,
                items,
                usize::MAX,
                &mut |_, _, _| {},
            )
            .expect("build");
            let build_s = t.elapsed().as_secs_f64();
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
                "{:>8} {:>7} {:>9} {:>9} {:>9}",
                "search_k", "rerank", "recall@10", "ms/query", "cpu ms/q"
            );
            for &search_k in &search_ks {
                for &rerank in &reranks {
                    let params = SearchParams {
                        search_k: search_k as usize,
                        rerank: rerank as usize,
                    };
                    let t = Instant::now();
                    let cpu = cpu_ns();
                    let mut total = 0.0;
                    for (q, tr) in queries.iter().zip(&truths) {
                        let found: Vec<usize> = Searcher::new(&store, q, params)
                            .expect("searcher")
                            .take(10)
                            .map(|r| index_of(r.expect("search").0))
                            .collect();
                        total += recall(tr, &found);
                    }
                    let ms = t.elapsed().as_secs_f64() * 1e3 / nq as f64;
                    let cpu_ms = (cpu_ns() - cpu) as f64 / 1e6 / nq as f64;
                    println!(
                        "{search_k:>8} {rerank:>7} {:>9.3} {ms:>9.3} {cpu_ms:>9.3}",
                        total / nq as f64
                    );
                }
            }
        }
    }
}
