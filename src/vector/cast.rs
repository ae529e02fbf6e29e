//! Casts between `vector2048` and `real[]` / `double precision[]`.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::{Vector2048, VectorRef};
use crate::error::UserError;

fn deny_nulls(contains_nulls: bool) {
    if contains_nulls {
        UserError::new(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "array must not contain nulls",
        )
        .raise();
    }
}

#[pg_extern(immutable, strict, parallel_safe)]
fn real_array_to_vector2048(array: Array<'_, f32>) -> Vector2048 {
    deny_nulls(array.contains_nulls());
    let values: Vec<f64> = array.iter_deny_null().map(f64::from).collect();
    Vector2048::from_f64s(values.into_iter())
}

#[pg_extern(immutable, strict, parallel_safe)]
fn double_array_to_vector2048(array: Array<'_, f64>) -> Vector2048 {
    deny_nulls(array.contains_nulls());
    let values: Vec<f64> = array.iter_deny_null().collect();
    Vector2048::from_f64s(values.into_iter())
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_to_real_array(vector: VectorRef<'_>) -> Vec<f32> {
    vector.as_slice().iter().map(|v| v.to_f32()).collect()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_to_double_array(vector: VectorRef<'_>) -> Vec<f64> {
    vector.as_slice().iter().map(|v| v.to_f64()).collect()
}
