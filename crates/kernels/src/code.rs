//! The query-by-code dot product of the search's candidate scoring: an
//! int16 query against an item's int8 code, in exact integer arithmetic.
//!
//! Integers make every implementation give the same result whatever the
//! order of the additions, so the SIMD paths need no care to match the
//! portable one, and AVX-512 (`vpdpwssd`: 32 products a step, summed in
//! pairs into 16 lanes) can be used where the CPU has it: at the reduced
//! dimension of 256 a code takes 8 such steps, against 32 FMAs after 64
//! widening conversions for a float query.

/// The largest |query value| for which no partial sum of a `len`-long
/// [`dot_i16_i8`] can overflow an i32, whatever bytes the code holds
/// (|code| ≤ 128): 32 767 up to 512 dimensions.
pub fn query_code_limit(len: usize) -> i16 {
    let limit = i32::MAX as usize / (128 * len.max(1));
    limit.clamp(1, i16::MAX as usize) as i16
}

/// `Σ q[i] · (code[i] as i8)`. `code` must hold at least `q.len()` bytes;
/// with |q[i]| ≤ [`query_code_limit`]`(q.len())` the sum is exact.
#[inline]
pub fn dot_i16_i8(q: &[i16], code: &[u8]) -> i32 {
    let code = &code[..q.len()];
    #[cfg(target_arch = "x86_64")]
    {
        if x86::avx512_available() {
            // SAFETY: the CPU has AVX-512 F, BW and VNNI (checked just above).
            return unsafe { x86::dot_i16_i8_avx512(q, code) };
        }
        if crate::x86::available() {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { x86::dot_i16_i8_avx2(q, code) };
        }
    }
    dot_i16_i8_portable(q, code)
}

/// The specification: products summed left to right (wrapping, so damaged
/// input cannot panic; the limit above keeps real queries exact).
pub fn dot_i16_i8_portable(q: &[i16], code: &[u8]) -> i32 {
    q.iter()
        .zip(code)
        .map(|(&a, &c)| i32::from(a) * i32::from(c as i8))
        .fold(0, i32::wrapping_add)
}

/// The path [`dot_i16_i8`] takes on this CPU.
pub fn code_implementation() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::avx512_available() {
            return "avx512bw+vnni";
        }
        if crate::x86::available() {
            return "avx2";
        }
    }
    "portable"
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    pub fn avx512_available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        })
    }

    /// 32 elements a step in two accumulators (the multiply-add's latency).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI; `code.len() == q.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_i16_i8_avx512(q: &[i16], code: &[u8]) -> i32 {
        let len = q.len();
        let mut acc = [_mm512_setzero_si512(); 2];
        let mut i = 0;
        // SAFETY (all loads): i + 32 <= len for both slices.
        while i + 64 <= len {
            for (k, a) in acc.iter_mut().enumerate() {
                let at = i + 32 * k;
                let (qv, cv) = unsafe {
                    (
                        _mm512_loadu_si512(q.as_ptr().add(at).cast()),
                        _mm256_loadu_si256(code.as_ptr().add(at).cast()),
                    )
                };
                *a = _mm512_dpwssd_epi32(*a, qv, _mm512_cvtepi8_epi16(cv));
            }
            i += 64;
        }
        while i + 32 <= len {
            let (qv, cv) = unsafe {
                (
                    _mm512_loadu_si512(q.as_ptr().add(i).cast()),
                    _mm256_loadu_si256(code.as_ptr().add(i).cast()),
                )
            };
            acc[0] = _mm512_dpwssd_epi32(acc[0], qv, _mm512_cvtepi8_epi16(cv));
            i += 32;
        }
        let head = _mm512_reduce_add_epi32(_mm512_add_epi32(acc[0], acc[1]));
        head.wrapping_add(super::dot_i16_i8_portable(&q[i..], &code[i..]))
    }

    /// 16 elements a step (`vpmaddwd`: pairs of products into 8 lanes).
    ///
    /// # Safety
    /// The CPU must have AVX2; `code.len() == q.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_i16_i8_avx2(q: &[i16], code: &[u8]) -> i32 {
        let len = q.len();
        let mut acc = [_mm256_setzero_si256(); 2];
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= len for both slices.
        while i + 32 <= len {
            for (k, a) in acc.iter_mut().enumerate() {
                let at = i + 16 * k;
                let (qv, cv) = unsafe {
                    (
                        _mm256_loadu_si256(q.as_ptr().add(at).cast()),
                        _mm_loadu_si128(code.as_ptr().add(at).cast()),
                    )
                };
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(qv, _mm256_cvtepi8_epi16(cv)));
            }
            i += 32;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` has room for 8 i32.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), _mm256_add_epi32(acc[0], acc[1])) };
        let head = lanes.iter().fold(0i32, |s, &x| s.wrapping_add(x));
        head.wrapping_add(super::dot_i16_i8_portable(&q[i..], &code[i..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn every_path_is_exact() {
        let mut next = xorshift(11);
        for len in [0, 1, 15, 31, 32, 33, 63, 64, 65, 100, 256, 257, 2048] {
            let limit = i64::from(query_code_limit(len));
            for _ in 0..20 {
                let q: Vec<i16> = (0..len)
                    .map(|_| ((next() % (2 * limit as u64 + 1)) as i64 - limit) as i16)
                    .collect();
                let code: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let exact: i64 = q
                    .iter()
                    .zip(&code)
                    .map(|(&a, &c)| i64::from(a) * i64::from(c as i8))
                    .sum();
                assert_eq!(
                    i64::from(dot_i16_i8_portable(&q, &code)),
                    exact,
                    "len {len}"
                );
                assert_eq!(i64::from(dot_i16_i8(&q, &code)), exact, "len {len}");
                #[cfg(target_arch = "x86_64")]
                if crate::x86::available() {
                    // SAFETY: AVX2 checked just above.
                    let avx2 = unsafe { x86::dot_i16_i8_avx2(&q, &code) };
                    assert_eq!(i64::from(avx2), exact, "len {len}");
                }
            }
        }
    }

    #[test]
    fn the_limit_keeps_the_extremes_exact() {
        for len in [1, 256, 512, 513, 2048, 100_000] {
            let limit = query_code_limit(len);
            assert!(i64::from(limit) * 128 * len as i64 <= i64::from(i32::MAX));
            let q = vec![-limit; len];
            let code = vec![0x80u8; len]; // -128
            assert_eq!(
                i64::from(dot_i16_i8(&q, &code)),
                i64::from(limit) * 128 * len as i64
            );
        }
        assert_eq!(query_code_limit(256), i16::MAX);
    }
}
