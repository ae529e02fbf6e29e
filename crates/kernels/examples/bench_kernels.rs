//! ns per 2048-d distance, in cache: our dispatching kernel, the scalar
//! reference, and the simsimd crate's f16 kernels, measured in one process.
//!
//! cargo run --release -p imgsim-kernels --example bench_kernels

use std::hint::black_box;
use std::time::Instant;

use half::f16;
use simsimd::SpatialSimilarity;

const DIMS: usize = 2048;
const PAIRS: usize = 64; // 64 × 2 × 4 KB = 512 KB: in L2 cache
const RUNS: usize = 7;

fn vectors(seed: u64) -> Vec<Vec<f16>> {
    let mut state = seed;
    (0..PAIRS * 2)
        .map(|_| {
            (0..DIMS)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    f16::from_f32((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                })
                .collect()
        })
        .collect()
}

/// Median over RUNS of the mean ns per call over all pairs.
fn measure(data: &[Vec<f16>], f: &dyn Fn(&[f16], &[f16]) -> f32) -> f64 {
    let iterations = 2000;
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let mut sink = 0.0f32;
            for _ in 0..iterations {
                for pair in data.chunks_exact(2) {
                    sink += f(black_box(&pair[0]), black_box(&pair[1]));
                }
            }
            black_box(sink);
            start.elapsed().as_nanos() as f64 / (iterations * PAIRS) as f64
        })
        .collect();
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    runs[RUNS / 2]
}

fn as_simsimd(v: &[f16]) -> &[simsimd::f16] {
    // SAFETY: both are a transparent u16 bit pattern of an IEEE half.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) }
}

fn main() {
    let data = vectors(0x1234_5678);
    println!(
        "kernel implementation: {}",
        imgsim_kernels::implementation()
    );
    println!("| kernel | ours (dispatch) ns | scalar reference ns | simsimd ns | scalar / ours |");
    println!("|---|---|---|---|---|");
    type Kernel = fn(&[f16], &[f16]) -> f32;
    let rows: [(&str, Kernel, Kernel, Kernel); 2] = [
        (
            "l2_squared",
            imgsim_kernels::l2_squared,
            imgsim_kernels::scalar::l2_squared,
            |a, b| simsimd::f16::sqeuclidean(as_simsimd(a), as_simsimd(b)).unwrap() as f32,
        ),
        (
            "dot",
            imgsim_kernels::dot,
            imgsim_kernels::scalar::dot,
            |a, b| simsimd::f16::dot(as_simsimd(a), as_simsimd(b)).unwrap() as f32,
        ),
    ];
    for (name, ours, scalar, theirs) in rows {
        let ours_ns = measure(&data, &ours);
        let scalar_ns = measure(&data, &scalar);
        let simsimd_ns = measure(&data, &theirs);
        println!(
            "| {name} | {ours_ns:.1} | {scalar_ns:.1} | {simsimd_ns:.1} | {:.1}× |",
            scalar_ns / ours_ns
        );
    }
}
