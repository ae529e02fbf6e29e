//! Text I/O: `'[0.5, -1, 3e-2, …]'`, exactly 2048 finite numbers. The
//! parsing and printing are `imgsim_vector_io`'s (Postgres-free, fuzzed);
//! the output prints each half widened to `f32` in the shortest decimal
//! that reads back as that `f32`, so it always reads back as the same half.

use std::ffi::{CStr, CString};

use pgrx::prelude::*;

use super::{raise_input_error, Vector2048, VectorRef};

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_in(input: &CStr) -> Vector2048 {
    match imgsim_vector_io::parse_text_bytes(input.to_bytes()) {
        Ok(values) => Vector2048::from_halves(values),
        Err(error) => raise_input_error(error),
    }
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_out(vector: VectorRef<'_>) -> CString {
    CString::new(imgsim_vector_io::format_text(vector.as_slice()))
        .expect("a formatted vector has no NUL byte")
}
