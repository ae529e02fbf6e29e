//! imgsim: reverse image search inside PostgreSQL.
//!
//! - [`vector`]: the `vector2048` type, its I/O and distance operators.
//! - [`embedding`]: `image_embedding(bytea)`, a CNN run inside the backend.
//! - [`am`]: the `annoy` index access method.
#![deny(unsafe_op_in_unsafe_fn)]

pgrx::pg_module_magic!(name, version);

pub mod am;
pub mod embedding;
mod error;
pub mod vector;

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    am::options::init();
    embedding::init();
}

pgrx::extension_sql_file!("../sql/bootstrap.sql", bootstrap);
pgrx::extension_sql_file!("../sql/finalize.sql", finalize);
