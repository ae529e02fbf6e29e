//! Pure-Rust core of the `annoy` index access method: a forest of
//! random-projection trees over 2048-d half-float vectors, stored in pages of
//! a [`PageStore`].
//!
//! Design (README.md has the reasoning and measurements):
//! vectors are projected onto D' coordinates (the *tree space*) by a map
//! learned from a sample at build time (`pca`). Trees split there with
//! two-means hyperplanes, and every leaf entry carries an int8 code of its
//! item, so a candidate costs a D'-long int8 dot product instead of a 2048-d
//! f16 distance. The best `rerank` candidates by code are re-ranked with the
//! exact vectors, which are stored once per item in the index.
// SIMD lives in imgsim-kernels; the core itself needs no unsafe code.
#![forbid(unsafe_code)]

pub mod build;
pub mod check;
pub mod compact;
pub mod format;
pub mod insert;
mod items;
mod leaf;
mod meta;
pub mod pca;
pub mod rebuild;
pub mod search;
pub mod space;
pub mod store;
mod two_means;
mod types;
pub mod vacuum;

pub use build::{build, BuildError, BuildPhase, BuildStats, Builder};
pub use check::{check, CheckReport};
pub use compact::{compact, CompactStats};
pub use insert::{insert, Inserted};
pub use rebuild::{rebuild, rebuild_due, RebuildStats};
pub use search::{default_rerank, SearchParams, Searcher, DEFAULT_SEARCH_K};
pub use store::{MemStore, PageKind, PageStore};
pub use types::{Corruption, Metric, Options, Tid, DEFAULT_TREES};
pub use vacuum::{bulk_delete, DeleteStats};
