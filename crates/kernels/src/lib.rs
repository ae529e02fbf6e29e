//! Distance kernels over IEEE half-precision vectors.
//!
//! Every public function dispatches at run time: on x86-64 with AVX2, F16C and
//! FMA it uses [`x86`], elsewhere the scalar reference in [`scalar`]. The
//! scalar module is the specification; the tests compare the two. The
//! reduced-space kernels ([`reduced`]) and the integer code scores
//! ([`code`]) also take AVX-512 where the CPU has it.
#![deny(unsafe_op_in_unsafe_fn)]

use half::f16;

pub mod code;
pub mod reduced;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use code::{code_implementation, dot_i16_i8, query_code_limit};
pub use reduced::{axpy, dot_f16_f32, dot_f32, dot_f32_i8, dot_f32_le_bytes};

/// Asks the CPU to start bringing the cache line at `p` into its caches: a
/// hint that never faults and changes nothing the program can observe,
/// whatever the address (the search issues it for the page it will read
/// next, so that page's cache misses overlap the work on the current one).
#[inline]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64, and a prefetch neither faults nor
    // reads anything the program sees.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Which implementation the dispatching functions use on this CPU.
pub fn implementation() -> &'static str {
    if simd_available() {
        "avx2+f16c+fma"
    } else {
        "scalar"
    }
}

#[inline]
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

macro_rules! dispatch {
    ($name:ident, $doc:literal, ($($arg:ident),+)) => {
        #[doc = $doc]
        #[inline]
        pub fn $name($($arg: &[f16]),+) -> f32 {
            dispatch!(@check $($arg),+);
            #[cfg(target_arch = "x86_64")]
            if x86::available() {
                // SAFETY: the CPU has AVX2, F16C and FMA (checked above) and
                // the slices have equal lengths.
                return unsafe { x86::$name($($arg),+) };
            }
            scalar::$name($($arg),+)
        }
    };
    (@check $a:ident, $b:ident) => { assert_eq!($a.len(), $b.len(), "vector lengths differ"); };
    (@check $a:ident) => {};
}

dispatch!(
    l2_squared,
    "Squared Euclidean distance. Panics if the lengths differ.",
    (a, b)
);
dispatch!(dot, "Inner product. Panics if the lengths differ.", (a, b));
dispatch!(norm_squared, "Squared L2 norm.", (a));

#[cfg(test)]
mod tests;
