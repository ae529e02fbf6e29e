//! The reduced "tree space": a seeded random rotation of the 2048-d vectors
//! (sign flips + fast Walsh–Hadamard transform, repeated), truncated to D'
//! coordinates, in which the trees split and items get int8 codes.

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

/// In-place unnormalised fast Walsh–Hadamard transform; `x.len()` a power of two.
fn fwht(x: &mut [f32]) {
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

/// Maps full vectors to the tree space. Defined entirely by the metapage
/// (seed, rounds, dims, metric, centre, max norm), so searches rebuild it.
#[derive(Clone, Debug)]
pub struct TreeSpace {
    pub metric: Metric,
    pub reduced_dims: usize,
    /// ±1 per coordinate per round.
    signs: Vec<f32>,
    rounds: usize,
    /// Mean of the items' tree-space vectors at build; subtracted so codes
    /// spend their range on what differs between items.
    pub center: Vec<f32>,
}

impl TreeSpace {
    pub fn new(metric: Metric, reduced_dims: usize, seed: u64, rounds: usize) -> Self {
        let mut rng = Rng::new(seed ^ 0x5EED_0FA0_7A7E);
        let signs = (0..rounds * DIMS)
            .map(|_| if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
            .collect();
        TreeSpace {
            metric,
            reduced_dims,
            signs,
            rounds,
            center: vec![0.0; reduced_dims],
        }
    }

    /// First D' rotated coordinates, scaled so that squared norms and
    /// distances are preserved in expectation. Cosine normalises first.
    pub fn reduce(&self, v: &[f16], norm_sq: f32, out: &mut [f32]) {
        let mut x = [0f32; DIMS];
        for (o, h) in x.iter_mut().zip(v) {
            *o = h.to_f32();
        }
        if self.metric == Metric::Cosine && norm_sq > 0.0 {
            let inv = 1.0 / norm_sq.sqrt();
            x.iter_mut().for_each(|e| *e *= inv);
        }
        for r in 0..self.rounds {
            for (e, s) in x.iter_mut().zip(&self.signs[r * DIMS..(r + 1) * DIMS]) {
                *e *= s;
            }
            fwht(&mut x);
        }
        // Each round scales by sqrt(DIMS); keeping D' of DIMS coordinates
        // keeps D'/DIMS of the energy.
        let scale = (DIMS as f32).powf(-0.5 * self.rounds as f32)
            * (DIMS as f32 / self.reduced_dims as f32).sqrt();
        for (o, e) in out[..self.reduced_dims].iter_mut().zip(&x) {
            *o = e * scale;
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

    /// Uncentred tree-space vector of an item from its reduced coordinates.
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
        for (x, c) in v.iter_mut().zip(&self.center) {
            *x -= c;
        }
        quantize(&v, code)
    }

    /// Centred tree-space vector of a query.
    /// A query's tree-space vector, not centred (inner products).
    pub fn query_uncentred(&self, q: &[f16]) -> Vec<f32> {
        let mut out = vec![0f32; self.reduced_dims];
        self.reduce(q, imgsim_kernels::norm_squared(q), &mut out);
        out
    }

    /// A query's centred tree-space vector (L2 distances, tree margins).
    pub fn query(&self, q: &[f16]) -> Vec<f32> {
        let mut out = vec![0f32; self.reduced_dims];
        self.reduce(q, imgsim_kernels::norm_squared(q), &mut out);
        for (o, c) in out.iter_mut().zip(&self.center) {
            *o -= c;
        }
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

/// Independent partial sums in the dot products below: enough to fill the
/// vector registers and hide add latency. Both CPU paths compile the same
/// code, so they give bit-identical results.
const LANES: usize = 32;

macro_rules! lane_dot {
    ($a:expr, $b:expr, $conv:expr) => {{
        let (a, b) = ($a, $b);
        let mut acc = [0f32; LANES];
        let body = a.len() / LANES * LANES;
        for (xs, ys) in a[..body]
            .chunks_exact(LANES)
            .zip(b[..body].chunks_exact(LANES))
        {
            for i in 0..LANES {
                acc[i] += xs[i] * $conv(ys[i]);
            }
        }
        let mut sum: f32 = acc.iter().sum();
        for (x, y) in a[body..].iter().zip(&b[body..]) {
            sum += x * $conv(*y);
        }
        sum
    }};
}

fn code_as_f32(c: u8) -> f32 {
    f32::from(c as i8)
}

fn dot_code_portable(q: &[f32], code: &[u8]) -> f32 {
    lane_dot!(q, &code[..q.len()], code_as_f32)
}

fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    lane_dot!(a, &b[..a.len()], std::convert::identity)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_code_avx2(q: &[f32], code: &[u8]) -> f32 {
    lane_dot!(q, &code[..q.len()], code_as_f32)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    lane_dot!(a, &b[..a.len()], std::convert::identity)
}

/// `q · code` over `q`'s coordinates; code bytes are i8 values.
#[inline]
pub fn dot_code(q: &[f32], code: &[u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dot_code_avx2(q, code) };
    }
    dot_code_portable(q, code)
}

/// `a · b` over `a`'s coordinates.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dot_f32_avx2(a, b) };
    }
    dot_f32_portable(a, b)
}

/// Estimated squared tree-space distance between a centred query
/// (`|q|² = q_norm_sq`) and a coded item.
#[inline]
pub fn code_distance(q: &[f32], q_norm_sq: f32, scale: f32, code_norm_sq: f32, code: &[u8]) -> f32 {
    q_norm_sq - 2.0 * scale * dot_code(q, code) + code_norm_sq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_preserves_norm_with_all_dims() {
        let space = TreeSpace::new(Metric::L2, DIMS, 7, 2);
        let v: Vec<f16> = (0..DIMS)
            .map(|i| f16::from_f32(((i * 37) % 11) as f32 - 5.0))
            .collect();
        let mut out = vec![0f32; DIMS];
        let n = imgsim_kernels::norm_squared(&v);
        space.reduce(&v, n, &mut out);
        let m: f32 = out.iter().map(|x| x * x).sum();
        assert!((m - n).abs() / n < 1e-4, "{m} vs {n}");
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
        let est = code_distance(&a, qn, s, cn, &code);
        assert!((est - exact).abs() / exact < 0.01, "{est} vs {exact}");
    }
}

#[cfg(test)]
mod dot_tests {
    use super::*;

    #[test]
    fn simd_and_portable_dots_agree_bitwise() {
        let mut rng = Rng::new(3);
        for len in [1, 31, 64, 257] {
            let a: Vec<f32> = (0..len)
                .map(|_| rng.below(2001) as f32 / 1000.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|_| rng.below(2001) as f32 / 100.0 - 10.0)
                .collect();
            let c: Vec<u8> = (0..len).map(|_| rng.below(255) as u8).collect();
            assert_eq!(
                dot_code(&a, &c).to_bits(),
                dot_code_portable(&a, &c).to_bits()
            );
            assert_eq!(
                dot_f32(&a, &b).to_bits(),
                dot_f32_portable(&a, &b).to_bits()
            );
            let naive: f32 = a.iter().zip(&c).map(|(x, y)| x * f32::from(*y as i8)).sum();
            assert!((dot_code(&a, &c) - naive).abs() < 1e-3 * (1.0 + naive.abs()));
        }
    }
}
