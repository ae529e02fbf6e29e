//! The `vector2048` type: 2048 IEEE half floats.
//!
//! Layout: a fixed-length (`INTERNALLENGTH = 4096`), pass-by-reference type
//! with no varlena header. Every value has the same size, so a header would
//! only cost 4 bytes per row, and a fixed-length type is never TOASTed or
//! compressed: a row's vector is always read straight from its heap page, and
//! the index can store items at fixed offsets. Halves (not f32) halve the
//! storage and memory bandwidth of every distance; embeddings are unit-norm
//! values well inside half range and precision.

mod binary;
mod cast;
mod ops;
mod text;

use half::f16;
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::PgSqlErrorCode;

use crate::error::UserError;

/// Number of dimensions of every `vector2048`.
pub const DIMS: usize = 2048;
/// On-disk (and in-memory Datum) size of a value.
pub const SIZE_BYTES: usize = DIMS * std::mem::size_of::<f16>();
/// Largest finite half float.
pub const HALF_MAX: f64 = 65504.0;

/// A `vector2048` argument, borrowed from the Datum Postgres passes.
#[derive(Clone, Copy)]
pub struct VectorRef<'a>(&'a [f16; DIMS]);

impl<'a> VectorRef<'a> {
    pub fn as_slice(&self) -> &'a [f16] {
        self.0
    }

    /// Borrow the value a non-null `vector2048` Datum points at.
    ///
    /// # Safety
    /// `datum` must be a `vector2048` Datum that outlives `'a`.
    pub unsafe fn from_datum(datum: pg_sys::Datum) -> Self {
        // SAFETY: a vector2048 Datum points at 4096 bytes aligned for int2
        // (ALIGNMENT = int2 in the CREATE TYPE), which is f16's alignment.
        VectorRef(unsafe { &*datum.cast_mut_ptr::<[f16; DIMS]>() })
    }
}

/// An owned `vector2048`, returned to Postgres by copying into palloc'd memory.
#[derive(Clone, PartialEq, Debug)]
pub struct Vector2048(Box<[f16; DIMS]>);

impl Vector2048 {
    /// Build from halves; the caller guarantees every value is finite.
    pub fn from_halves(values: Box<[f16; DIMS]>) -> Self {
        debug_assert!(values.iter().all(|v| v.is_finite()));
        Vector2048(values)
    }

    /// Build from `f64` values, raising the user error for the first value
    /// that is NaN, infinite or outside half range.
    pub fn from_f64s(values: impl ExactSizeIterator<Item = f64>) -> Self {
        check_dims(values.len());
        let mut out = Box::new([f16::ZERO; DIMS]);
        for (slot, value) in out.iter_mut().zip(values) {
            *slot = to_half(value);
        }
        Vector2048(out)
    }

    pub fn as_slice(&self) -> &[f16] {
        &self.0[..]
    }
}

/// Raise the dimension-mismatch error unless `n` is [`DIMS`].
pub fn check_dims(n: usize) {
    if n != DIMS {
        UserError::new(
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            format!("expected {DIMS} dimensions, not {n}"),
        )
        .hint("A vector2048 value has exactly 2048 elements.")
        .raise();
    }
}

/// Convert one element to a half, raising the user error for NaN, infinity
/// and values outside half range (rather than silently saturating).
pub fn to_half(value: f64) -> f16 {
    if value.is_nan() {
        UserError::new(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, "NaN not allowed in vector2048").raise();
    }
    if value.is_infinite() {
        UserError::new(
            PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            "infinite value not allowed in vector2048",
        )
        .raise();
    }
    if value.abs() > HALF_MAX {
        UserError::new(
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!("value {} is out of range for type vector2048", display_number(value)),
        )
        .detail("Elements are half floats: the largest magnitude is 65504.")
        .raise();
    }
    f16::from_f64(value)
}

/// Plain digits for ordinary magnitudes, scientific notation for huge ones.
fn display_number(value: f64) -> String {
    if value.abs() < 1e9 {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

const SQL_NAME: &str = "vector2048";

// The SQL type is created by sql/bootstrap.sql (shell) and sql/finalize.sql,
// so to pgrx's schema generator it is an existing ("external") type.
unsafe impl SqlTranslatable for VectorRef<'_> {
    const TYPE_IDENT: &'static str = "imgsim::vector::VectorRef";
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal(SQL_NAME));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal(SQL_NAME)));
}

unsafe impl SqlTranslatable for Vector2048 {
    const TYPE_IDENT: &'static str = "imgsim::vector::Vector2048";
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal(SQL_NAME));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal(SQL_NAME)));
}

unsafe impl<'fcx> ArgAbi<'fcx> for VectorRef<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        assert!(!arg.is_null(), "vector2048 argument {} is null", arg.index());
        // SAFETY: the caller (pgrx's wrapper) guarantees the argument is a
        // non-null vector2048 Datum living as long as the call ('fcx).
        let datum: Option<RawDatum> = unsafe { arg.unbox_arg_using_from_datum() };
        unsafe { VectorRef::from_datum(datum.expect("non-null argument").0) }
    }
}

/// The raw Datum of an argument, read through pgrx's FromDatum path.
struct RawDatum(pg_sys::Datum);

impl pgrx::FromDatum for RawDatum {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        (!is_null).then_some(RawDatum(datum))
    }
}

unsafe impl BoxRet for Vector2048 {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        // SAFETY: palloc in the function's memory context (chosen by pgrx
        // before the call) and copy the 4096 bytes the type's length says.
        unsafe {
            let ptr = pg_sys::palloc(SIZE_BYTES).cast::<[f16; DIMS]>();
            ptr.write(*self.0);
            fcinfo.return_raw_datum(pg_sys::Datum::from(ptr))
        }
    }
}
