//! imgsim: reverse image search inside PostgreSQL.
//!
//! - [`vector`]: the `vector2048` type, its I/O and distance operators.
#![deny(unsafe_op_in_unsafe_fn)]

pgrx::pg_module_magic!(name, version);

mod error;
pub mod vector;

pgrx::extension_sql_file!("../sql/bootstrap.sql", bootstrap);
pgrx::extension_sql_file!("../sql/finalize.sql", finalize);
