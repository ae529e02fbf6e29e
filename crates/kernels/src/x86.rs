//! AVX2 + F16C + FMA kernels: 8 halves are widened to f32 per instruction
//! and accumulated in four independent registers (32 elements per step) so
//! the FMA latency is hidden.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use half::f16;

/// Whether this CPU runs these kernels (detected once).
#[inline]
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("fma")
    })
}

#[inline]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn load8(ptr: *const f16) -> __m256 {
    // SAFETY: the caller guarantees 8 readable halves at `ptr`.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(ptr.cast())) }
}

#[inline]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn horizontal_sum(v: __m256) -> f32 {
    let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let quad = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
    let single = _mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1));
    _mm_cvtss_f32(single)
}

/// Sum over i of `step(acc, a[8i..], b[8i..])`, 32 elements per iteration;
/// the tail (len % 8) is finished with `tail`.
macro_rules! kernel {
    ($name:ident, ($($arg:ident),+), |$acc:ident, $($x:ident),+| $step:expr, $tail:expr) => {
        /// # Safety
        /// The CPU must support AVX2, F16C and FMA; slices of equal length.
        #[target_feature(enable = "avx2,f16c,fma")]
        pub unsafe fn $name($($arg: &[f16]),+) -> f32 {
            let len = kernel!(@len $($arg),+);
            let mut sums = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            // SAFETY (all loads): i + 8 * k + 8 <= len for every load below.
            while i + 32 <= len {
                for (k, $acc) in sums.iter_mut().enumerate() {
                    $(let $x = unsafe { load8($arg.as_ptr().add(i + 8 * k)) };)+
                    *$acc = $step;
                }
                i += 32;
            }
            while i + 8 <= len {
                let $acc = &mut sums[0];
                $(let $x = unsafe { load8($arg.as_ptr().add(i)) };)+
                *$acc = $step;
                i += 8;
            }
            let total = _mm256_add_ps(_mm256_add_ps(sums[0], sums[1]), _mm256_add_ps(sums[2], sums[3]));
            let head = unsafe { horizontal_sum(total) };
            head + $tail($(&$arg[i..]),+)
        }
    };
    (@len $a:ident, $b:ident) => { $a.len().min($b.len()) };
    (@len $a:ident) => { $a.len() };
}

kernel!(
    l2_squared,
    (a, b),
    |acc, x, y| {
        let d = _mm256_sub_ps(x, y);
        _mm256_fmadd_ps(d, d, *acc)
    },
    crate::scalar::l2_squared
);

kernel!(
    dot,
    (a, b),
    |acc, x, y| _mm256_fmadd_ps(x, y, *acc),
    crate::scalar::dot
);

kernel!(
    norm_squared,
    (a),
    |acc, x| _mm256_fmadd_ps(x, x, *acc),
    crate::scalar::norm_squared
);
