//! What must hold for any input bytes, shared by the fuzz targets and by
//! `tests/fuzz_corpus.rs`, which replays the corpus the fuzzers found.
// Each fuzz target uses one of the two.
#![allow(dead_code)]

use imgsim_vector_io::{
    format_binary, format_text, parse_binary, parse_text, parse_text_bytes, InputErrorKind,
};

/// The text input function: no panic; an accepted value prints as text that
/// reads back bit for bit; a refusal is a user error with a message.
pub fn text_input(data: &[u8]) {
    match parse_text_bytes(data) {
        Ok(values) => {
            let text = format_text(&values[..]);
            let again = parse_text(&text).expect("printed text reads back");
            assert!(
                values
                    .iter()
                    .zip(again.iter())
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "text round trip changed a value"
            );
        }
        Err(error) => {
            assert_ne!(error.kind, InputErrorKind::Binary);
            assert!(!error.message.is_empty());
        }
    }
}

/// The binary receive function: no panic; an accepted value sends back the
/// same bytes; a refusal is a binary-representation error.
pub fn binary_input(data: &[u8]) {
    match parse_binary(data) {
        Ok(values) => {
            assert!(values.iter().all(|v| v.is_finite()));
            // The reserved field is not checked on input and is sent as 0.
            let mut expected = data.to_vec();
            expected[2..4].copy_from_slice(&[0, 0]);
            assert_eq!(format_binary(&values[..]), expected);
        }
        Err(error) => assert_eq!(error.kind, InputErrorKind::Binary),
    }
}
