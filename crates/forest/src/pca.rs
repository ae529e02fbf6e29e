//! The tree space learned from a sample: half of its D' coordinates span the
//! sample's top principal subspace (subspace iteration), the other half are
//! a scaled random projection of the rest of the space, and a seeded random
//! rotation mixes the two.
//!
//! Why: a random projection of 2048-d data onto D' coordinates distorts
//! distances by about √(1/D') of their size whatever the data, which on data
//! with neighbourhoods of ~100 dimensions is as large as the gaps between
//! neighbours. The principal subspace keeps nearly all of a low-rank
//! manifold's variance, so the trees split and the codes measure what
//! actually differs between items. But data whose clusters each vary along
//! their own directions have more structure than any D' global directions
//! hold; the random half keeps the residual's share of every distance in
//! expectation, as the whole space did before. The final rotation spreads
//! the variance evenly over the coordinates, which the int8 codes (one
//! scale per item) need.

use half::f16;
use imgsim_kernels::{axpy, dot_f16_f32, dot_f32};

use crate::format::DIMS;
use crate::space::{fwht, gaussian, Basis, Rng};

/// Rows of 2048 f32 handled together in the products below (128 KB: they
/// stay in cache while the other operand streams past).
const BLOCK: usize = 16;

/// Subspace iterations; the subspace only has to be good, not converged.
const ITERATIONS: usize = 6;

/// Rows kept for learning the basis (a uniform sample of the items).
pub const SAMPLE_ROWS: usize = 2048;

/// The basis: `dims` rows of [`DIMS`] values (orthogonal, of unit length
/// on the principal half and √((2048 − dims/2) / (dims/2)) on the random
/// half, before a mixing rotation that keeps `BᵀB`), rounded to half
/// precision, and `offset = rows · mean`, so an item's coordinates are
/// `rows · x − offset`. `sample` holds rows of [`DIMS`] values (possibly
/// none: the basis is then random). Work is split over `threads` threads,
/// each of which runs `thread_init` first.
pub fn learn_basis(
    sample: &[f32],
    dims: usize,
    seed: u64,
    threads: usize,
    thread_init: fn(),
) -> Basis {
    assert!(dims.is_power_of_two() && dims <= DIMS);
    let rows = sample.len() / DIMS;
    let mut mean = vec![0f32; DIMS];
    for x in sample.chunks_exact(DIMS) {
        axpy(1.0 / rows as f32, x, &mut mean);
    }
    let mut rng = Rng::new(seed ^ 0xB0A5_15EE_D5EE_D000);
    let principal = dims / 2;
    let mut basis: Vec<f32> = (0..principal * DIMS).map(|_| gaussian(&mut rng)).collect();
    orthonormalize(&mut basis, &mut rng);
    if rows >= 2 {
        for _ in 0..ITERATIONS {
            basis = covariance_times(sample, &mean, &basis, threads, thread_init);
            orthonormalize(&mut basis, &mut rng);
        }
    }
    // The other half: random directions orthogonal to the principal ones,
    // scaled so that they keep the residual's share of squared distances in
    // expectation (a random projection of what the principal part misses).
    basis.extend((0..(dims - principal) * DIMS).map(|_| gaussian(&mut rng)));
    orthonormalize(&mut basis, &mut rng);
    let residual_scale = (((DIMS - principal) as f32) / ((dims - principal) as f32)).sqrt();
    basis[principal * DIMS..]
        .iter_mut()
        .for_each(|x| *x *= residual_scale);
    rotate_rows(&mut basis, dims, &mut rng);
    let rows: Vec<f16> = basis.iter().map(|&x| f16::from_f32(x)).collect();
    let offset = rows
        .chunks_exact(DIMS)
        .map(|b| dot_f16_f32(b, &mean))
        .collect();
    Basis { offset, rows }
}

/// `C · v` for every row `v` of `basis`, where `C` is the sample's
/// (unnormalised) covariance: `Σ_s (x_s − μ)((x_s − μ) · v)`.
fn covariance_times(
    sample: &[f32],
    mean: &[f32],
    basis: &[f32],
    threads: usize,
    thread_init: fn(),
) -> Vec<f32> {
    let dims = basis.len() / DIMS;
    let rows = sample.len() / DIMS;
    let mean_proj: Vec<f32> = basis.chunks_exact(DIMS).map(|b| dot_f32(b, mean)).collect();
    // Projections of the centred sample (rows × dims), a block of sample
    // rows per basis row pass so both stay in cache.
    let mut proj = vec![0f32; rows * dims];
    parallel_chunks(&mut proj, BLOCK * dims, threads, thread_init, |b, out| {
        let block = &sample[b * BLOCK * DIMS..((b * BLOCK + out.len() / dims) * DIMS)];
        for (j, (v, m)) in basis.chunks_exact(DIMS).zip(&mean_proj).enumerate() {
            for (s, x) in block.chunks_exact(DIMS).enumerate() {
                out[s * dims + j] = dot_f32(v, x) - m;
            }
        }
    });
    // Σ_s proj[s][j] (x_s − μ) for a block of output rows j at a time.
    let mut result = vec![0f32; dims * DIMS];
    parallel_chunks(&mut result, BLOCK * DIMS, threads, thread_init, |b, out| {
        let first = b * BLOCK;
        for (s, x) in sample.chunks_exact(DIMS).enumerate() {
            for (k, row) in out.chunks_exact_mut(DIMS).enumerate() {
                axpy(proj[s * dims + first + k], x, row);
            }
        }
        for (k, row) in out.chunks_exact_mut(DIMS).enumerate() {
            let weight_sum: f32 = (0..rows).map(|s| proj[s * dims + first + k]).sum();
            axpy(-weight_sum, mean, row);
        }
    });
    result
}

/// Fills `out` (made of `chunk`-sized pieces, the last possibly shorter)
/// by `f(piece index, piece)` on up to `threads` threads.
pub(crate) fn parallel_chunks<T: Send, F>(
    out: &mut [T],
    chunk: usize,
    threads: usize,
    thread_init: fn(),
    f: F,
) where
    F: Fn(usize, &mut [T]) + Sync,
{
    let pieces = out.len().div_ceil(chunk);
    let threads = threads.clamp(1, pieces.max(1));
    if threads == 1 {
        out.chunks_mut(chunk).enumerate().for_each(|(i, p)| f(i, p));
        return;
    }
    // Contiguous ranges of pieces, one per thread; this thread takes the last.
    let per = pieces.div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let mut ranges = out.chunks_mut(per * chunk).enumerate().peekable();
        while let Some((r, part)) = ranges.next() {
            let mut job = move || {
                for (i, p) in part.chunks_mut(chunk).enumerate() {
                    f(r * per + i, p);
                }
            };
            if ranges.peek().is_some() {
                scope.spawn(move || {
                    thread_init();
                    job()
                });
            } else {
                job();
            }
        }
    });
}

/// Modified Gram–Schmidt over the rows; a row that collapses (the sample
/// spans fewer dimensions than there are rows) is replaced by a random one.
fn orthonormalize(basis: &mut [f32], rng: &mut Rng) {
    let dims = basis.len() / DIMS;
    for i in 0..dims {
        for attempt in 0..4 {
            let (done, rest) = basis.split_at_mut(i * DIMS);
            let row = &mut rest[..DIMS];
            let before = dot_f32(row, row).sqrt();
            for prev in done.chunks_exact(DIMS) {
                let c = dot_f32(prev, row);
                axpy(-c, prev, row);
            }
            let norm = dot_f32(row, row).sqrt();
            if norm > 1e-4 * before.max(f32::MIN_POSITIVE) && norm.is_finite() && attempt < 3 {
                row.iter_mut().for_each(|x| *x /= norm);
                break;
            }
            row.iter_mut().for_each(|x| *x = gaussian(rng));
        }
    }
}

/// Replaces the rows by a random orthogonal mix of them (random signs and a
/// Walsh–Hadamard transform down each column), which keeps the subspace.
fn rotate_rows(basis: &mut [f32], dims: usize, rng: &mut Rng) {
    let signs: Vec<f32> = (0..dims)
        .map(|_| if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
        .collect();
    let scale = 1.0 / (dims as f32).sqrt();
    let mut column = vec![0f32; dims];
    for c in 0..DIMS {
        for (r, v) in column.iter_mut().enumerate() {
            *v = basis[r * DIMS + c] * signs[r];
        }
        fwht(&mut column);
        for (r, v) in column.iter().enumerate() {
            basis[r * DIMS + c] = v * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_subspace_of_low_rank_data() {
        // Data in a 16-d subspace plus tiny noise: the 32 principal rows of
        // a 64-row basis capture nearly all of every centred point, so the
        // squared norm in the tree space is at least that part (the random
        // half adds its expectation-preserving share of the tiny rest).
        let mut rng = Rng::new(5);
        let directions: Vec<f32> = (0..16 * DIMS).map(|_| gaussian(&mut rng)).collect();
        let rows = 300;
        let mut sample = vec![0f32; rows * DIMS];
        for x in sample.chunks_exact_mut(DIMS) {
            for d in directions.chunks_exact(DIMS) {
                axpy(gaussian(&mut rng), d, x);
            }
            x.iter_mut()
                .for_each(|e| *e += 1.0 + 0.001 * gaussian(&mut rng));
        }
        let learned = learn_basis(&sample, 64, 9, 2, || {});
        let offset = learned.offset;
        let basis: Vec<f32> = learned.rows.iter().map(|h| h.to_f32()).collect();
        // The mixing rotation gives every row the same length.
        let len_sq = dot_f32(&basis[..DIMS], &basis[..DIMS]);
        for row in basis.chunks_exact(DIMS) {
            assert!((dot_f32(row, row) - len_sq).abs() < 1e-2 * len_sq);
        }
        let mut mean = vec![0f32; DIMS];
        for row in sample.chunks_exact(DIMS) {
            axpy(1.0 / rows as f32, row, &mut mean);
        }
        let x = &sample[..DIMS];
        let mean_free: Vec<f32> = x.iter().zip(&mean).map(|(e, m)| e - m).collect();
        let kept: f32 = basis
            .chunks_exact(DIMS)
            .zip(&offset)
            .map(|(b, o)| (dot_f32(b, x) - o).powi(2))
            .sum();
        let total = dot_f32(&mean_free, &mean_free);
        assert!(
            kept > 0.99 * total && kept < 1.2 * total,
            "kept {kept} of {total}"
        );
    }
}
