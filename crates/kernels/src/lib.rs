//! Distance kernels over IEEE half-precision vectors.
//!
//! Every public function dispatches at run time: on x86-64 with AVX2, F16C and
//! FMA it uses the SIMD path, elsewhere the scalar reference in [`scalar`].
//! The scalar module is the specification; tests compare the two.
#![deny(unsafe_op_in_unsafe_fn)]

use half::f16;

pub mod scalar;

/// Squared Euclidean distance. Panics if the lengths differ.
#[inline]
pub fn l2_squared(a: &[f16], b: &[f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    scalar::l2_squared(a, b)
}

/// Inner product. Panics if the lengths differ.
#[inline]
pub fn dot(a: &[f16], b: &[f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    scalar::dot(a, b)
}

/// Squared L2 norm.
#[inline]
pub fn norm_squared(a: &[f16]) -> f32 {
    scalar::norm_squared(a)
}
