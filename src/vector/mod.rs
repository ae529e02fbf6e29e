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
use imgsim_vector_io::{InputError, InputErrorKind};
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::{IntoDatum, PgSqlErrorCode};

use crate::error::UserError;

pub use imgsim_vector_io::DIMS;
/// On-disk (and in-memory Datum) size of a value.
pub const SIZE_BYTES: usize = DIMS * std::mem::size_of::<f16>();

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

    /// Build from `f64` values, raising the user error for a count other
    /// than [`DIMS`] or the first value that is NaN, infinite or outside
    /// half range.
    pub fn from_f64s(values: impl ExactSizeIterator<Item = f64>) -> Self {
        match imgsim_vector_io::halves_from_f64s(values) {
            Ok(values) => Vector2048(values),
            Err(error) => raise_input_error(error),
        }
    }

    pub fn as_slice(&self) -> &[f16] {
        &self.0[..]
    }
}

/// Raise a refused input as the ERROR of its kind.
pub fn raise_input_error(error: InputError) -> ! {
    let code = match error.kind {
        InputErrorKind::Syntax => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        InputErrorKind::Data => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        InputErrorKind::OutOfRange => PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        InputErrorKind::Binary => PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
    };
    let mut report = UserError::new(code, error.message);
    if let Some(detail) = error.detail {
        report = report.detail(detail);
    }
    if let Some(hint) = error.hint {
        report = report.hint(hint);
    }
    report.raise()
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
        assert!(
            !arg.is_null(),
            "vector2048 argument {} is null",
            arg.index()
        );
        // SAFETY: the caller (pgrx's wrapper) guarantees the argument is a
        // non-null vector2048 Datum living as long as the call ('fcx).
        let datum: Option<RawDatum> = unsafe { arg.unbox_arg_using_from_datum() };
        unsafe { VectorRef::from_datum(datum.expect("non-null argument").0) }
    }
}

/// The raw Datum of an argument, read through pgrx's FromDatum path.
struct RawDatum(pg_sys::Datum);

impl pgrx::FromDatum for RawDatum {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then_some(RawDatum(datum))
    }
}

unsafe impl BoxRet for Vector2048 {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        let datum = self.into_datum().expect("a vector2048 is never NULL");
        // SAFETY: a Datum pointing at palloc'd memory of the function's call.
        unsafe { fcinfo.return_raw_datum(datum) }
    }
}

/// For the columns of a row a set-returning function returns.
impl IntoDatum for Vector2048 {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        // SAFETY: palloc in the current memory context (the function's, chosen
        // by pgrx before the call) and copy the 4096 bytes the type's length says.
        unsafe {
            let ptr = pg_sys::palloc(SIZE_BYTES).cast::<[f16; DIMS]>();
            ptr.write(*self.0);
            Some(pg_sys::Datum::from(ptr))
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pgrx::wrappers::regtypein(SQL_NAME)
    }
}
