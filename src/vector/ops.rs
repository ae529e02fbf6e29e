//! Distance functions and the operators' support functions.
//!
//! Same names and meanings as pgvector: `<->` Euclidean distance, `<=>`
//! cosine distance, `<#>` negative inner product.

use half::f16;
use imgsim_kernels as kernels;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::{Vector2048, VectorRef, DIMS};
use crate::error::UserError;

fn zero_vector_error(what: &str) -> ! {
    UserError::new(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("{what} is undefined for a zero vector"),
    )
    .hint("Use l2_distance (<->) or inner_product (<#>), or leave out all-zero vectors.")
    .raise()
}

pub fn cosine(a: &[f16], b: &[f16]) -> f64 {
    let norms = f64::from(kernels::norm_squared(a)) * f64::from(kernels::norm_squared(b));
    if norms == 0.0 {
        zero_vector_error("cosine distance");
    }
    let similarity = f64::from(kernels::dot(a, b)) / norms.sqrt();
    // Rounding can push |similarity| just past 1.
    1.0 - similarity.clamp(-1.0, 1.0)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn l2_distance(a: VectorRef<'_>, b: VectorRef<'_>) -> f64 {
    f64::from(kernels::l2_squared(a.as_slice(), b.as_slice())).sqrt()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn cosine_distance(a: VectorRef<'_>, b: VectorRef<'_>) -> f64 {
    cosine(a.as_slice(), b.as_slice())
}

#[pg_extern(immutable, strict, parallel_safe)]
fn inner_product(a: VectorRef<'_>, b: VectorRef<'_>) -> f64 {
    f64::from(kernels::dot(a.as_slice(), b.as_slice()))
}

/// Support function of `<#>`: ascending order means largest inner product first.
#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_negative_inner_product(a: VectorRef<'_>, b: VectorRef<'_>) -> f64 {
    -f64::from(kernels::dot(a.as_slice(), b.as_slice()))
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector_dims(_vector: VectorRef<'_>) -> i32 {
    DIMS as i32
}

#[pg_extern(immutable, strict, parallel_safe)]
fn l2_norm(vector: VectorRef<'_>) -> f64 {
    f64::from(kernels::norm_squared(vector.as_slice())).sqrt()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn l2_normalize(vector: VectorRef<'_>) -> Vector2048 {
    let norm = f64::from(kernels::norm_squared(vector.as_slice())).sqrt();
    if norm == 0.0 {
        zero_vector_error("l2_normalize");
    }
    let mut out = Box::new([f16::ZERO; DIMS]);
    for (slot, value) in out.iter_mut().zip(vector.as_slice()) {
        *slot = f16::from_f64(value.to_f64() / norm);
    }
    Vector2048::from_halves(out)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_eq(a: VectorRef<'_>, b: VectorRef<'_>) -> bool {
    a.as_slice() == b.as_slice()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_ne(a: VectorRef<'_>, b: VectorRef<'_>) -> bool {
    a.as_slice() != b.as_slice()
}
