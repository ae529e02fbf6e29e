//! Binary send/recv, used by COPY BINARY and binary-protocol clients.
//!
//! Wire format: int16 dimension count (2048), int16 reserved (0), then 2048
//! IEEE half floats, each as a big-endian 16-bit pattern.

use half::f16;
use pgrx::prelude::*;
use pgrx::{pg_sys, Internal, PgSqlErrorCode};

use super::{Vector2048, VectorRef, DIMS};
use crate::error::UserError;

const HEADER_BYTES: usize = 4;
const MESSAGE_BYTES: usize = HEADER_BYTES + DIMS * 2;

fn binary_error(message: String) -> ! {
    UserError::new(PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION, message).raise()
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_send(vector: VectorRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MESSAGE_BYTES);
    out.extend_from_slice(&(DIMS as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    for value in vector.as_slice() {
        out.extend_from_slice(&value.to_bits().to_be_bytes());
    }
    out
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_recv(mut buffer: Internal, _type_oid: pg_sys::Oid, _typmod: i32) -> Vector2048 {
    // SAFETY: the receive function's first argument is a StringInfo.
    let buffer = unsafe { buffer.get_mut::<pg_sys::StringInfoData>() }.expect("recv buffer");
    let remaining = (buffer.len - buffer.cursor) as usize;
    if remaining != MESSAGE_BYTES {
        binary_error(format!(
            "vector2048 binary value must be {MESSAGE_BYTES} bytes, got {remaining}"
        ));
    }
    // SAFETY: `remaining` bytes from `cursor` lie inside the buffer.
    let bytes = unsafe {
        std::slice::from_raw_parts(buffer.data.add(buffer.cursor as usize).cast::<u8>(), remaining)
    };
    let dims = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    if dims != DIMS {
        binary_error(format!("expected {DIMS} dimensions, not {dims}"));
    }
    let mut values = Box::new([f16::ZERO; DIMS]);
    for (slot, pair) in values.iter_mut().zip(bytes[HEADER_BYTES..].chunks_exact(2)) {
        let value = f16::from_bits(u16::from_be_bytes([pair[0], pair[1]]));
        if !value.is_finite() {
            binary_error("NaN or infinite value not allowed in vector2048".into());
        }
        *slot = value;
    }
    buffer.cursor = buffer.len;
    Vector2048::from_halves(values)
}
