//! Binary send/recv, used by COPY BINARY and binary-protocol clients.
//!
//! Wire format (`imgsim_vector_io`, Postgres-free and fuzzed): int16
//! dimension count (2048), int16 reserved (0), then 2048 IEEE half floats,
//! each as a big-endian 16-bit pattern.

use pgrx::prelude::*;
use pgrx::{pg_sys, Internal};

use super::{raise_input_error, Vector2048, VectorRef};

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_send(vector: VectorRef<'_>) -> Vec<u8> {
    imgsim_vector_io::format_binary(vector.as_slice())
}

#[pg_extern(immutable, strict, parallel_safe)]
fn vector2048_recv(mut buffer: Internal, _type_oid: pg_sys::Oid, _typmod: i32) -> Vector2048 {
    // SAFETY: the receive function's first argument is a StringInfo.
    let buffer = unsafe { buffer.get_mut::<pg_sys::StringInfoData>() }.expect("recv buffer");
    let remaining = (buffer.len - buffer.cursor) as usize;
    // SAFETY: `remaining` bytes from `cursor` lie inside the buffer.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            buffer.data.add(buffer.cursor as usize).cast::<u8>(),
            remaining,
        )
    };
    match imgsim_vector_io::parse_binary(bytes) {
        Ok(values) => {
            buffer.cursor = buffer.len;
            Vector2048::from_halves(values)
        }
        Err(error) => raise_input_error(error),
    }
}
