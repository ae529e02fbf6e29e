//! Input and output of `vector2048` values, free of Postgres so that it can be
//! unit-tested and fuzzed (`fuzz/`). The extension's type I/O functions call
//! these and turn an [`InputError`] into an ERROR with the SQLSTATE of its
//! [`InputErrorKind`].
//!
//! * Text: `[0.5, -1, 3e-2, …]`, exactly [`DIMS`] numbers separated by commas,
//!   whitespace allowed around the brackets, commas and numbers.
//! * Binary (COPY BINARY, binary protocol): int16 dimension count (2048),
//!   int16 reserved (0), then 2048 IEEE half floats as big-endian 16-bit
//!   patterns.

use std::fmt::{self, Write};

use half::f16;

/// Number of dimensions of every `vector2048`.
pub const DIMS: usize = 2048;
/// Largest finite half float.
pub const HALF_MAX: f64 = 65504.0;
/// Bytes of the binary form.
pub const MESSAGE_BYTES: usize = HEADER_BYTES + DIMS * 2;
const HEADER_BYTES: usize = 4;
/// Characters of a bad text input quoted in the error message.
const QUOTED_CHARS: usize = 40;

/// The elements of a value; every one is finite.
pub type Halves = Box<[f16; DIMS]>;

/// What is wrong with an input, which decides its SQLSTATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputErrorKind {
    /// Not the text syntax (22P02 invalid_text_representation).
    Syntax,
    /// Not 2048 elements, NaN or infinity (22000 data_exception).
    Data,
    /// An element beyond half range (22003 numeric_value_out_of_range).
    OutOfRange,
    /// A malformed binary value (22P03 invalid_binary_representation).
    Binary,
}

/// A refused input: its kind and the words of the error report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub kind: InputErrorKind,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl InputError {
    fn new(kind: InputErrorKind, message: String) -> Self {
        InputError {
            kind,
            message,
            detail: None,
            hint: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    fn syntax(input: &str, detail: String) -> Self {
        // Long inputs are cut in the message; the detail says where it failed.
        let shown: String = input.chars().take(QUOTED_CHARS).collect();
        let ellipsis = if shown.len() < input.len() { "…" } else { "" };
        InputError::new(
            InputErrorKind::Syntax,
            format!("invalid input syntax for type vector2048: \"{shown}{ellipsis}\""),
        )
        .detail(detail)
    }

    fn binary(message: String) -> Self {
        InputError::new(InputErrorKind::Binary, message)
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InputError {}

/// The dimension-mismatch error unless `n` is [`DIMS`].
pub fn check_dims(n: usize) -> Result<(), InputError> {
    if n == DIMS {
        return Ok(());
    }
    let mut error = InputError::new(
        InputErrorKind::Data,
        format!("expected {DIMS} dimensions, not {n}"),
    );
    error.hint = Some("A vector2048 value has exactly 2048 elements.".into());
    Err(error)
}

/// One element as a half; NaN, infinity and values outside half range are
/// refused rather than silently saturated.
pub fn to_half(value: f64) -> Result<f16, InputError> {
    if value.is_nan() {
        return Err(InputError::new(
            InputErrorKind::Data,
            "NaN not allowed in vector2048".into(),
        ));
    }
    if value.is_infinite() {
        return Err(InputError::new(
            InputErrorKind::Data,
            "infinite value not allowed in vector2048".into(),
        ));
    }
    if value.abs() > HALF_MAX {
        return Err(InputError::new(
            InputErrorKind::OutOfRange,
            format!(
                "value {} is out of range for type vector2048",
                display_number(value)
            ),
        )
        .detail("Elements are half floats: the largest magnitude is 65504."));
    }
    Ok(f16::from_f64(value))
}

/// Plain digits for ordinary magnitudes, scientific notation for huge ones.
fn display_number(value: f64) -> String {
    if value.abs() < 1e9 {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

/// Exactly [`DIMS`] values as halves: the dimension error first, then the
/// error of the first value that is not a finite half.
pub fn halves_from_f64s(values: impl ExactSizeIterator<Item = f64>) -> Result<Halves, InputError> {
    check_dims(values.len())?;
    let mut out = Box::new([f16::ZERO; DIMS]);
    for (slot, value) in out.iter_mut().zip(values) {
        *slot = to_half(value)?;
    }
    Ok(out)
}

/// Parse the text form from the bytes Postgres hands the input function.
pub fn parse_text_bytes(input: &[u8]) -> Result<Halves, InputError> {
    match std::str::from_utf8(input) {
        Ok(text) => parse_text(text),
        Err(_) => Err(InputError::syntax(
            &String::from_utf8_lossy(input),
            "The input is not valid UTF-8.".into(),
        )),
    }
}

/// Parse the text form. Every element must be a number before dimensions
/// and ranges are checked.
pub fn parse_text(input: &str) -> Result<Halves, InputError> {
    let trimmed = input.trim();
    let Some(body) = trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    else {
        return Err(InputError::syntax(
            input,
            "A vector2048 literal starts with \"[\" and ends with \"]\".".into(),
        ));
    };
    if body.trim().is_empty() {
        check_dims(0)?;
    }
    let mut values = Vec::with_capacity(DIMS);
    for (index, element) in body.split(',').enumerate() {
        let element = element.trim();
        match element.parse::<f64>() {
            Ok(value) if !element.is_empty() => values.push(value),
            _ => {
                return Err(InputError::syntax(
                    input,
                    format!("Element {} is not a number: \"{element}\".", index + 1),
                ))
            }
        }
    }
    halves_from_f64s(values.into_iter())
}

/// The text form. Each half is printed as the shortest decimal that reads
/// back as the same `f32` (the half widened exactly), so the text always
/// reads back as the same half, though not always in the fewest digits a
/// half would need (half 0.1 prints as 0.099975586).
pub fn format_text(values: &[f16]) -> String {
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

/// Parse the binary form: the whole of `bytes` must be one value.
pub fn parse_binary(bytes: &[u8]) -> Result<Halves, InputError> {
    if bytes.len() != MESSAGE_BYTES {
        return Err(InputError::binary(format!(
            "vector2048 binary value must be {MESSAGE_BYTES} bytes, got {}",
            bytes.len()
        )));
    }
    let dims = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    if dims != DIMS {
        return Err(InputError::binary(format!(
            "expected {DIMS} dimensions, not {dims}"
        )));
    }
    let mut values = Box::new([f16::ZERO; DIMS]);
    for (slot, pair) in values.iter_mut().zip(bytes[HEADER_BYTES..].chunks_exact(2)) {
        let value = f16::from_bits(u16::from_be_bytes([pair[0], pair[1]]));
        if !value.is_finite() {
            return Err(InputError::binary(
                "NaN or infinite value not allowed in vector2048".into(),
            ));
        }
        *slot = value;
    }
    Ok(values)
}

/// The binary form of `values` (which has [`DIMS`] elements).
pub fn format_binary(values: &[f16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MESSAGE_BYTES);
    out.extend_from_slice(&(DIMS as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    for value in values {
        out.extend_from_slice(&value.to_bits().to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(elements: &[&str]) -> String {
        format!("[{}]", elements.join(","))
    }

    #[test]
    fn text_round_trip_keeps_every_bit() {
        let values: Vec<f16> = (0..DIMS as u16)
            .map(|i| f16::from_bits((i * 15 % 0x7c00) | ((i & 1) << 15)))
            .collect();
        let text = format_text(&values);
        let parsed = parse_text(&text).unwrap();
        assert!(values
            .iter()
            .zip(parsed.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(
            format_text(&[f16::from_f32(0.1), f16::NEG_ZERO]),
            "[0.099975586,-0]"
        );
    }

    #[test]
    fn text_errors_have_their_kind_and_words() {
        let error = parse_text("(1,2)").unwrap_err();
        assert_eq!(error.kind, InputErrorKind::Syntax);
        assert_eq!(
            error.message,
            "invalid input syntax for type vector2048: \"(1,2)\""
        );
        let long = format!("[{}x]", "1,".repeat(30));
        let error = parse_text(&long).unwrap_err();
        assert_eq!(
            error.message,
            format!(
                "invalid input syntax for type vector2048: \"{}…\"",
                &long[..40]
            )
        );
        assert_eq!(
            error.detail.as_deref(),
            Some("Element 31 is not a number: \"x\".")
        );
        assert_eq!(
            parse_text_bytes(b"[\xff]").unwrap_err().detail.as_deref(),
            Some("The input is not valid UTF-8.")
        );
        let error = parse_text(" [ ] ").unwrap_err();
        assert_eq!(
            (error.kind, error.message.as_str()),
            (InputErrorKind::Data, "expected 2048 dimensions, not 0")
        );
        let mut elements = vec!["1"; DIMS];
        elements[5] = "70000";
        let error = parse_text(&literal(&elements)).unwrap_err();
        assert_eq!(error.kind, InputErrorKind::OutOfRange);
        assert_eq!(
            error.message,
            "value 70000 is out of range for type vector2048"
        );
        elements[5] = "1e300";
        assert_eq!(
            parse_text(&literal(&elements)).unwrap_err().message,
            "value 1e300 is out of range for type vector2048"
        );
        elements[5] = "nan";
        assert_eq!(
            parse_text(&literal(&elements)).unwrap_err().kind,
            InputErrorKind::Data
        );
        // Syntax is checked over all elements before the count.
        assert_eq!(
            parse_text("[1,,2]").unwrap_err().kind,
            InputErrorKind::Syntax
        );
    }

    #[test]
    fn binary_round_trip_and_errors() {
        let values: Vec<f16> = (0..DIMS)
            .map(|i| f16::from_f32(i as f32 - 1000.0))
            .collect();
        let bytes = format_binary(&values);
        assert_eq!(bytes.len(), MESSAGE_BYTES);
        assert_eq!(&parse_binary(&bytes).unwrap()[..], &values[..]);
        let error = parse_binary(&bytes[..10]).unwrap_err();
        assert_eq!(
            (error.kind, error.message.as_str()),
            (
                InputErrorKind::Binary,
                "vector2048 binary value must be 4100 bytes, got 10"
            )
        );
        let mut bad = bytes.clone();
        bad[1] = 0xff;
        assert_eq!(
            parse_binary(&bad).unwrap_err().message,
            "expected 2048 dimensions, not 2303"
        );
        let mut bad = bytes;
        bad[100..102].copy_from_slice(&f16::INFINITY.to_bits().to_be_bytes());
        assert_eq!(
            parse_binary(&bad).unwrap_err().message,
            "NaN or infinite value not allowed in vector2048"
        );
    }
}
