//! The reduced "tree space": a seeded random rotation of the 2048-d vectors
//! (sign flips + fast Walsh–Hadamard transform, repeated), truncated to D'
//! coordinates, in which the trees split and items get int8 codes.

use std::sync::Arc;

use half::f16;

use crate::format::DIMS;
use crate::Metric;

/// SplitMix64: small, seedable, good enough for sampling and sign flips.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// A standard normal deviate (Box–Muller).
pub fn gaussian(rng: &mut Rng) -> f32 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = ((rng.next_u64() >> 11) as f64) / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// In-place unnormalised fast Walsh–Hadamard transform; `x.len()` a power of two.
pub(crate) fn fwht(x: &mut [f32]) {
    let n = x.len();
    let mut h = 1;
    while h < n {
        for block in x.chunks_exact_mut(2 * h) {
            let (a, b) = block.split_at_mut(h);
            for (u, v) in a.iter_mut().zip(b.iter_mut()) {
                let (s, d) = (*u + *v, *u - *v);
                *u = s;
                *v = d;
            }
        }
        h *= 2;
    }
}

/// The linear map into the tree space, as stored in the index's basis
/// pages: `reduced_dims` orthonormal rows of 2048 values and the projected
/// build-sample mean (`offset`). An item's coordinates are `rows · x − offset`.
#[derive(Debug, PartialEq)]
pub struct Basis {
    pub offset: Vec<f32>,
    /// Half precision: the basis is read once per query, so its size is
    /// what the projection costs.
    pub rows: Vec<f16>,
}

impl Basis {
    pub fn dims(&self) -> usize {
        self.offset.len()
    }
}

/// Maps full vectors to the tree space. Defined by the metapage (metric,
/// centre) and the basis pages, so searches rebuild it.
#[derive(Clone, Debug)]
pub struct TreeSpace {
    pub metric: Metric,
    pub reduced_dims: usize,
    pub basis: Arc<Basis>,
}

impl TreeSpace {
    pub fn new(metric: Metric, basis: Arc<Basis>) -> Self {
        let reduced_dims = basis.dims();
        TreeSpace {
            metric,
            reduced_dims,
            basis,
        }
    }

    /// `rows · x − offset`; cosine normalises `x`.
    fn project(&self, v: &[f16], norm_sq: f32, out: &mut [f32]) {
        let mut x = [0f32; DIMS];
        for (o, h) in x.iter_mut().zip(v) {
            *o = h.to_f32();
        }
        if self.metric == Metric::Cosine && norm_sq > 0.0 {
            let inv = 1.0 / norm_sq.sqrt();
            x.iter_mut().for_each(|e| *e *= inv);
        }
        let rows = self.basis.rows.chunks_exact(DIMS);
        for ((o, row), off) in out[..self.reduced_dims]
            .iter_mut()
            .zip(rows)
            .zip(&self.basis.offset)
        {
            *o = dot_f16_f32(row, &x) - off;
        }
    }

    /// Tree-space coordinates of a vector (before the centre is taken off).
    pub fn reduce(&self, v: &[f16], norm_sq: f32, out: &mut [f32]) {
        self.project(v, norm_sq, out);
    }

    /// `reduce_item` of many vectors at once (`vectors` and `norms_sq` of
    /// equal count; `out` gets `reduced_dims` values per vector). Each basis
    /// row is read once per batch rather than once per vector, which keeps
    /// the projection in cache (the basis is 2 MB at D' = 256).
    pub fn reduce_items(&self, vectors: &[f16], norms_sq: &[f32], out: &mut [f16]) {
        let count = norms_sq.len();
        let d = self.reduced_dims;
        let mut xs = vec![0f32; count * DIMS];
        for ((x, v), &norm_sq) in xs
            .chunks_exact_mut(DIMS)
            .zip(vectors.chunks_exact(DIMS))
            .zip(norms_sq)
        {
            let scale = match self.metric {
                Metric::Cosine if norm_sq > 0.0 => 1.0 / norm_sq.sqrt(),
                _ => 1.0,
            };
            for (o, h) in x.iter_mut().zip(v) {
                *o = h.to_f32() * scale;
            }
        }
        for (r, (row, off)) in self
            .basis
            .rows
            .chunks_exact(DIMS)
            .zip(&self.basis.offset)
            .enumerate()
        {
            for (k, x) in xs.chunks_exact(DIMS).enumerate() {
                out[k * d + r] = f16::from_f32(dot_f16_f32(row, x) - off);
            }
        }
    }

    /// An item's reduced coordinates as kept during build (half precision).
    /// Codes are always derived from these, so they can be recomputed
    /// exactly from the stored vector (`check`, inserts).
    pub fn reduce_item(&self, v: &[f16], norm_sq: f32, out: &mut [f16]) {
        let mut x = vec![0f32; self.reduced_dims];
        self.reduce(v, norm_sq, &mut x);
        for (o, e) in out.iter_mut().zip(&x) {
            *o = f16::from_f32(*e);
        }
    }

    /// Tree-space vector of an item from its reduced coordinates.
    pub fn item_vector(&self, reduced: &[f16], out: &mut [f32]) {
        for (o, h) in out.iter_mut().zip(reduced) {
            *o = h.to_f32();
        }
    }

    /// An item's code (`reduced_dims` bytes) from its reduced coordinates.
    /// Returns `(scale, scale² · |code|²)`.
    pub fn item_code(&self, reduced: &[f16], code: &mut [u8]) -> (f32, f32) {
        let mut v = vec![0f32; self.reduced_dims];
        self.item_vector(reduced, &mut v);
        quantize(&v, code)
    }

    /// `rows · q` of a query from its centred vector, i.e. with the offset
    /// put back (inner products: what the offset takes off is the same for
    /// every item). Adding it back spares a second projection, which costs
    /// as much as reading the whole basis.
    pub fn uncentred(&self, centred: &[f32]) -> Vec<f32> {
        centred
            .iter()
            .zip(&self.basis.offset)
            .map(|(c, off)| c + off)
            .collect()
    }

    /// A query's centred tree-space vector (L2 distances, tree margins).
    pub fn query(&self, q: &[f16]) -> Vec<f32> {
        let mut out = vec![0f32; self.reduced_dims];
        self.reduce(q, imgsim_kernels::norm_squared(q), &mut out);
        out
    }
}

/// Quantises a centred tree-space vector to int8 (stored as the bytes of
/// the i8 values) with one scale. Returns `(scale, scale² · |code|²)`.
pub fn quantize(v: &[f32], code: &mut [u8]) -> (f32, f32) {
    let max_abs = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max_abs == 0.0 || !max_abs.is_finite() {
        code.iter_mut().for_each(|c| *c = 0);
        return (0.0, 0.0);
    }
    let scale = max_abs / 127.0;
    let mut sum = 0i32;
    for (c, x) in code.iter_mut().zip(v) {
        let q = (x / scale).round().clamp(-127.0, 127.0) as i8;
        *c = q as u8;
        sum += i32::from(q) * i32::from(q);
    }
    (scale, scale * scale * sum as f32)
}

pub use imgsim_kernels::{dot_f16_f32, dot_f32, dot_f32_i8 as dot_code, dot_f32_le_bytes};

/// A tree-space query on an int16 grid, for scoring the candidates' int8
/// codes in integer arithmetic (several times fewer instructions than a
/// float query, and exact on every CPU). The grid's step is 1/32 767 of
/// the largest coordinate, far below the codes' own step of 1/127, so the
/// estimates are those of the float query to about 1e-4 of the code error.
pub struct QueryCode {
    values: Vec<i16>,
    step: f32,
}

impl QueryCode {
    pub fn new(q: &[f32]) -> Self {
        let max_abs = q.iter().fold(0f32, |m, x| m.max(x.abs()));
        if max_abs == 0.0 || !max_abs.is_finite() {
            return QueryCode {
                values: vec![0; q.len()],
                step: 0.0,
            };
        }
        let limit = f32::from(imgsim_kernels::query_code_limit(q.len()));
        let step = max_abs / limit;
        let values = q
            .iter()
            .map(|x| (x / step).round().clamp(-limit, limit) as i16)
            .collect();
        QueryCode { values, step }
    }

    /// ≈ `q · code` for an item's int8 code.
    #[inline]
    pub fn dot(&self, code: &[u8]) -> f32 {
        self.step * imgsim_kernels::dot_i16_i8(&self.values, code) as f32
    }
}

/// Estimated squared tree-space distance between a centred query
/// (`|q|² = q_norm_sq`) and a coded item.
#[inline]
pub fn code_distance(
    q: &QueryCode,
    q_norm_sq: f32,
    scale: f32,
    code_norm_sq: f32,
    code: &[u8],
) -> f32 {
    q_norm_sq - 2.0 * scale * q.dot(code) + code_norm_sq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_random_basis_preserves_norms() {
        let space = TreeSpace::new(
            Metric::L2,
            Arc::new(crate::pca::learn_basis(&[], DIMS, 7, 1, || {})),
        );
        let v: Vec<f16> = (0..DIMS)
            .map(|i| f16::from_f32(((i * 37) % 11) as f32 - 5.0))
            .collect();
        let mut out = vec![0f32; DIMS];
        let n = imgsim_kernels::norm_squared(&v);
        space.reduce(&v, n, &mut out);
        let m: f32 = out.iter().map(|x| x * x).sum();
        assert!((m - n).abs() / n < 1e-3, "{m} vs {n}");
    }

    #[test]
    fn quantized_distance_is_close() {
        let mut rng = Rng::new(1);
        let a: Vec<f32> = (0..256)
            .map(|_| rng.below(1000) as f32 / 500.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..256)
            .map(|_| rng.below(1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut code = vec![0u8; 256];
        let (s, cn) = quantize(&b, &mut code);
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        let qn: f32 = a.iter().map(|x| x * x).sum();
        let est = code_distance(&QueryCode::new(&a), qn, s, cn, &code);
        assert!((est - exact).abs() / exact < 0.01, "{est} vs {exact}");
        let float_dot = dot_code(&a, &code);
        let int_dot = QueryCode::new(&a).dot(&code);
        assert!((int_dot - float_dot).abs() < 1e-4 * (1.0 + float_dot.abs()));
    }
}
