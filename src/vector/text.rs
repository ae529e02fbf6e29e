//! Text I/O: `'[0.5, -1, 3e-2, …]'`, exactly 2048 finite numbers.

use std::ffi::{CStr, CString};
use std::fmt::Write;

use half::f16;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::{check_dims, Vector2048, VectorRef, DIMS};
use crate::error::UserError;

fn syntax_error(input: &str, detail: String) -> ! {
    // Long inputs are cut in the message; the detail says where it failed.
    let shown: String = input.chars().take(40).collect();
    let ellipsis = if shown.len() < input.len() { "…" } else { "" };
    UserError::new(
        PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        format!("invalid input syntax for type vector2048: \"{shown}{ellipsis}\""),
    )
    .detail(detail)
    .raise()
}

/// Parse the text form. Elements are separated by commas; whitespace is
/// allowed around brackets, commas and numbers.
pub fn parse(input: &str) -> Vector2048 {
    let trimmed = input.trim();
    let Some(body) = trimmed.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) else {
        syntax_error(input, "A vector2048 literal starts with \"[\" and ends with \"]\".".into());
    };
    if body.trim().is_empty() {
        check_dims(0);
    }
    let mut values = Vec::with_capacity(DIMS);
    for (index, element) in body.split(',').enumerate() {
        let element = element.trim();
        match element.parse::<f64>() {
            Ok(value) if !element.is_empty() => values.push(value),
            _ => syntax_error(input, format!("Element {} is not a number: \"{element}\".", index + 1)),
        }
    }
    Vector2048::from_f64s(values.into_iter())
}

/// The text form: shortest decimal that reads back as the same half.
pub fn format(values: &[f16]) -> String {
    let mut out = String::with_capacity(values.len() * 8);
    out.push('[');
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write!(out, "{}", value.to_f32()).expect("writing to a String");
    }
    out.push(']');
    out
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_in(input: &CStr) -> Vector2048 {
    match input.to_str() {
        Ok(text) => parse(text),
        Err(_) => syntax_error(&input.to_string_lossy(), "The input is not valid UTF-8.".into()),
    }
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_out(vector: VectorRef<'_>) -> CString {
    CString::new(format(vector.as_slice())).expect("a formatted vector has no NUL byte")
}
