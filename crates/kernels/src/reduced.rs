//! Kernels over f32 vectors of the index's reduced space: `f32 · f32`,
//! `f32 · f32 stored as little-endian bytes` (split normals read in place
//! from their page), `f32 · int8 code`, `f16 · f32` (the projection onto
//! the stored basis) and `y += a·x`.
//!
//! One portable body with independent partial sums (fused multiply-adds)
//! is compiled three times, once with AVX2 + FMA and once with AVX-512
//! enabled, so every path gives bit-identical results (codes recomputed by
//! `check` must match those written by the build, whatever the CPU): the
//! wider registers hold more of the same 32 lanes, each summed in the same
//! order, and the lanes are added up in lane order at the end.

/// Independent partial sums: enough to fill the vector registers and hide
/// the add latency.
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
                acc[i] = xs[i].mul_add($conv(ys[i]), acc[i]);
            }
        }
        let mut sum: f32 = acc.iter().sum();
        for (x, y) in a[body..].iter().zip(&b[body..]) {
            sum = x.mul_add($conv(*y), sum);
        }
        sum
    }};
}

fn code_as_f32(c: u8) -> f32 {
    f32::from(c as i8)
}

/// `a · b` where `b` holds `a.len()` f32s as little-endian bytes, with the
/// lanes and order of `lane_dot!`, so it equals `dot_f32` of the decoded `b`
/// bit for bit.
macro_rules! lane_dot_le_bytes {
    ($a:expr, $b:expr) => {{
        let (a, b): (&[f32], &[u8]) = ($a, $b);
        let b = &b[..4 * a.len()];
        let at = |bytes: &[u8], i: usize| {
            f32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ])
        };
        let mut acc = [0f32; LANES];
        let body = a.len() / LANES * LANES;
        for (xs, ys) in a[..body]
            .chunks_exact(LANES)
            .zip(b[..4 * body].chunks_exact(4 * LANES))
        {
            for i in 0..LANES {
                acc[i] = xs[i].mul_add(at(ys, i), acc[i]);
            }
        }
        let mut sum: f32 = acc.iter().sum();
        for (i, x) in a[body..].iter().enumerate() {
            sum = x.mul_add(at(&b[4 * body..], i), sum);
        }
        sum
    }};
}

fn dot_f32_le_bytes_portable(a: &[f32], b: &[u8]) -> f32 {
    lane_dot_le_bytes!(a, b)
}

fn dot_f32_i8_portable(q: &[f32], code: &[u8]) -> f32 {
    lane_dot!(q, &code[..q.len()], code_as_f32)
}

fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    lane_dot!(a, &b[..a.len()], std::convert::identity)
}

fn dot_f16_f32_portable(a: &[half::f16], b: &[f32]) -> f32 {
    lane_dot!(b, &a[..b.len()], half::f16::to_f32)
}

fn axpy_portable(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o = alpha.mul_add(*v, *o);
    }
}

// The same bodies again (the macro, not a call: a function's target
// features only reach code compiled inside it).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{code_as_f32, LANES};

    #[target_feature(enable = "avx2,fma")]
    pub fn dot_f32_i8(q: &[f32], code: &[u8]) -> f32 {
        lane_dot!(q, &code[..q.len()], code_as_f32)
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        lane_dot!(a, &b[..a.len()], std::convert::identity)
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn dot_f32_le_bytes(a: &[f32], b: &[u8]) -> f32 {
        lane_dot_le_bytes!(a, b)
    }

    /// Same lanes and order as the portable body: 32 partial sums (four
    /// registers of 8, F16C widening) summed in lane order, then the tail.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn dot_f16_f32(a: &[half::f16], b: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let len = b.len();
        let a = &a[..len];
        let body = len / LANES * LANES;
        let mut regs = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < body {
            for (k, r) in regs.iter_mut().enumerate() {
                // SAFETY: i + 8k + 8 <= body <= len for both slices.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(b.as_ptr().add(i + 8 * k)),
                        _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(i + 8 * k).cast())),
                    )
                };
                *r = _mm256_fmadd_ps(x, y, *r);
            }
            i += LANES;
        }
        let mut acc = [0f32; LANES];
        for (k, r) in regs.iter().enumerate() {
            // SAFETY: acc has room for 8 floats at 8k.
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(8 * k), *r) };
        }
        let mut sum: f32 = acc.iter().sum();
        for (x, y) in b[body..].iter().zip(&a[body..]) {
            sum = x.mul_add(y.to_f32(), sum);
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        for (o, v) in y.iter_mut().zip(x) {
            *o = alpha.mul_add(*v, *o);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{code_as_f32, LANES};

    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    pub fn dot_f32_i8(q: &[f32], code: &[u8]) -> f32 {
        lane_dot!(q, &code[..q.len()], code_as_f32)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        lane_dot!(a, &b[..a.len()], std::convert::identity)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    pub fn dot_f32_le_bytes(a: &[f32], b: &[u8]) -> f32 {
        lane_dot_le_bytes!(a, b)
    }

    /// The lanes of the AVX2 body in two registers of 16.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    pub fn dot_f16_f32(a: &[half::f16], b: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let len = b.len();
        let a = &a[..len];
        let body = len / LANES * LANES;
        let mut regs = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        while i < body {
            for (k, r) in regs.iter_mut().enumerate() {
                // SAFETY: i + 16k + 16 <= body <= len for both slices.
                let (x, y) = unsafe {
                    (
                        _mm512_loadu_ps(b.as_ptr().add(i + 16 * k)),
                        _mm512_cvtph_ps(_mm256_loadu_si256(a.as_ptr().add(i + 16 * k).cast())),
                    )
                };
                *r = _mm512_fmadd_ps(x, y, *r);
            }
            i += LANES;
        }
        let mut acc = [0f32; LANES];
        for (k, r) in regs.iter().enumerate() {
            // SAFETY: acc has room for 16 floats at 16k.
            unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(16 * k), *r) };
        }
        let mut sum: f32 = acc.iter().sum();
        for (x, y) in b[body..].iter().zip(&a[body..]) {
            sum = x.mul_add(y.to_f32(), sum);
        }
        sum
    }
}

#[inline]
fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            crate::x86::available()
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[inline]
fn avx2_available() -> bool {
    // x86::available() covers AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    {
        crate::x86::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

macro_rules! dispatch {
    ($name:ident, $portable:ident, ($($arg:ident: $ty:ty),+) $(-> $ret:ty)?) => {
        dispatch!(@body $name, $portable, ($($arg: $ty),+) $(-> $ret)?, {});
    };
    (wide $name:ident, $portable:ident, ($($arg:ident: $ty:ty),+) $(-> $ret:ty)?) => {
        dispatch!(@body $name, $portable, ($($arg: $ty),+) $(-> $ret)?, {
            #[cfg(target_arch = "x86_64")]
            if avx512_available() {
                // SAFETY: the CPU has AVX-512 F and BW besides AVX2, FMA and
                // F16C (checked just above); the function is safe code
                // compiled with those features.
                return unsafe { avx512::$name($($arg),+) };
            }
        });
    };
    (@body $name:ident, $portable:ident, ($($arg:ident: $ty:ty),+) $(-> $ret:ty)?, $wide:block) => {
        #[inline]
        pub fn $name($($arg: $ty),+) $(-> $ret)? {
            $wide
            #[cfg(target_arch = "x86_64")]
            if avx2_available() {
                // SAFETY: the CPU has AVX2 and FMA (checked just above); the
                // function is safe code compiled with those features.
                return unsafe { avx2::$name($($arg),+) };
            }
            $portable($($arg),+)
        }
    };
}

dispatch!(wide dot_f32_i8, dot_f32_i8_portable, (q: &[f32], code: &[u8]) -> f32);
dispatch!(wide dot_f32, dot_f32_portable, (a: &[f32], b: &[f32]) -> f32);
dispatch!(wide dot_f32_le_bytes, dot_f32_le_bytes_portable, (a: &[f32], b: &[u8]) -> f32);
dispatch!(wide dot_f16_f32, dot_f16_f32_portable, (a: &[half::f16], b: &[f32]) -> f32);
dispatch!(axpy, axpy_portable, (alpha: f32, x: &[f32], y: &mut [f32]));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_portable_agree_bitwise() {
        let mut state = 3u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2001) as f32 / 1000.0 - 1.0
        };
        for len in [1, 31, 64, 257, 2048] {
            let a: Vec<f32> = (0..len).map(|_| next()).collect();
            let b: Vec<f32> = (0..len).map(|_| 10.0 * next()).collect();
            let c: Vec<u8> = (0..len).map(|_| (next() * 127.0) as i8 as u8).collect();
            assert_eq!(
                dot_f32_i8(&a, &c).to_bits(),
                dot_f32_i8_portable(&a, &c).to_bits()
            );
            assert_eq!(
                dot_f32(&a, &b).to_bits(),
                dot_f32_portable(&a, &b).to_bits()
            );
            let b_bytes: Vec<u8> = b.iter().flat_map(|x| x.to_le_bytes()).collect();
            assert_eq!(
                dot_f32_le_bytes(&a, &b_bytes).to_bits(),
                dot_f32(&a, &b).to_bits()
            );
            assert_eq!(
                dot_f32_le_bytes_portable(&a, &b_bytes).to_bits(),
                dot_f32(&a, &b).to_bits()
            );
            let h: Vec<half::f16> = b.iter().map(|x| half::f16::from_f32(*x)).collect();
            assert_eq!(
                dot_f16_f32(&h, &a).to_bits(),
                dot_f16_f32_portable(&h, &a).to_bits()
            );
            // Each SIMD path on its own (the dispatch takes only the widest).
            #[cfg(target_arch = "x86_64")]
            for (available, f32_i8, f32_f32, le_bytes, f16_f32) in [
                (
                    avx2_available(),
                    avx2::dot_f32_i8 as unsafe fn(&[f32], &[u8]) -> f32,
                    avx2::dot_f32 as unsafe fn(&[f32], &[f32]) -> f32,
                    avx2::dot_f32_le_bytes as unsafe fn(&[f32], &[u8]) -> f32,
                    avx2::dot_f16_f32 as unsafe fn(&[half::f16], &[f32]) -> f32,
                ),
                (
                    avx512_available(),
                    avx512::dot_f32_i8,
                    avx512::dot_f32,
                    avx512::dot_f32_le_bytes,
                    avx512::dot_f16_f32,
                ),
            ] {
                if !available {
                    continue;
                }
                // SAFETY: the CPU has the path's features (checked above).
                unsafe {
                    assert_eq!(
                        f32_i8(&a, &c).to_bits(),
                        dot_f32_i8_portable(&a, &c).to_bits()
                    );
                    assert_eq!(
                        f32_f32(&a, &b).to_bits(),
                        dot_f32_portable(&a, &b).to_bits()
                    );
                    assert_eq!(
                        le_bytes(&a, &b_bytes).to_bits(),
                        dot_f32_portable(&a, &b).to_bits()
                    );
                    assert_eq!(
                        f16_f32(&h, &a).to_bits(),
                        dot_f16_f32_portable(&h, &a).to_bits()
                    );
                }
            }
            let naive: f64 = a
                .iter()
                .zip(&c)
                .map(|(x, y)| f64::from(*x) * f64::from(*y as i8))
                .sum();
            assert!((f64::from(dot_f32_i8(&a, &c)) - naive).abs() < 1e-3 * (1.0 + naive.abs()));
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot_f32(&a, &b)) - naive).abs() < 1e-3 * (1.0 + naive.abs()));
            let mut y1 = b.clone();
            let mut y2 = b.clone();
            axpy(0.5, &a, &mut y1);
            axpy_portable(0.5, &a, &mut y2);
            assert_eq!(y1, y2);
            assert!((y1[0] - (b[0] + 0.5 * a[0])).abs() < 1e-6);
        }
    }
}
