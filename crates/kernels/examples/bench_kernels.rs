//! ns per 2048-d distance, in cache: our dispatching kernel, the scalar
//! reference, and the simsimd crate's f16 kernels, measured in one process;
//! then ns per leaf-code score at the reduced dimension (256): a float query
//! against the int8 code, and the int16 query the search uses.
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
    code_scores();
}

/// ns per `query · code` over 64 codes of 256 bytes, median of RUNS.
fn code_scores() {
    const REDUCED: usize = 256;
    let mut state = 0x9E37_79B9u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let codes: Vec<Vec<u8>> = (0..PAIRS)
        .map(|_| (0..REDUCED).map(|_| (next() % 255) as u8).collect())
        .collect();
    let q_f32: Vec<f32> = (0..REDUCED)
        .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect();
    let q_i16: Vec<i16> = q_f32.iter().map(|x| (x * 60_000.0) as i16).collect();
    let time = |f: &dyn Fn(&[u8]) -> f32| {
        let iterations = 20_000;
        let mut runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                let mut sink = 0.0f32;
                for _ in 0..iterations {
                    for code in &codes {
                        sink += f(black_box(code));
                    }
                }
                black_box(sink);
                start.elapsed().as_nanos() as f64 / (iterations * PAIRS) as f64
            })
            .collect();
        runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        runs[RUNS / 2]
    };
    let float_ns = time(&|c| imgsim_kernels::dot_f32_i8(&q_f32, c));
    let int_ns = time(&|c| imgsim_kernels::dot_i16_i8(&q_i16, c) as f32);
    let portable_ns = time(&|c| imgsim_kernels::code::dot_i16_i8_portable(&q_i16, c) as f32);
    println!();
    println!(
        "leaf-code score at {REDUCED} dims; integer path: {}",
        imgsim_kernels::code_implementation()
    );
    println!(
        "| f32 query · int8 code ns | i16 query · int8 code ns | i16 portable ns | f32 / i16 |"
    );
    println!("|---|---|---|---|");
    println!(
        "| {float_ns:.1} | {int_ns:.1} | {portable_ns:.1} | {:.1}× |",
        float_ns / int_ns
    );
}
