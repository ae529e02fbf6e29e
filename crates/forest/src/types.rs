//! The types shared by every phase: heap TIDs, metrics, build options and
//! the error every page reader returns.

use std::fmt;

use crate::format;

/// Heap tuple identifier, opaque to the index: block and line pointer offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid {
    pub block: u32,
    pub offset: u16,
}

impl Tid {
    pub fn to_bytes(self) -> [u8; 6] {
        let mut b = [0u8; 6];
        b[..4].copy_from_slice(&self.block.to_le_bytes());
        b[4..].copy_from_slice(&self.offset.to_le_bytes());
        b
    }

    pub fn from_bytes(b: [u8; 6]) -> Self {
        Tid {
            block: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            offset: u16::from_le_bytes([b[4], b[5]]),
        }
    }
}

/// Distance the index orders by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Metric {
    /// Euclidean distance (reported as the distance, not its square).
    L2 = 1,
    /// `1 − cos`; NaN when either vector is zero (sorted last).
    Cosine = 2,
    /// Negative inner product.
    InnerProduct = 3,
}

impl Metric {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Metric::L2,
            2 => Metric::Cosine,
            3 => Metric::InnerProduct,
            _ => return None,
        })
    }
}

/// Build options (the index's reloptions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Number of trees (1..=64).
    pub trees: u32,
    /// Most entries per leaf; 0 = as many as fit a page.
    pub leaf_size: u32,
    /// D': rotated coordinates kept for splitting and codes (power of two,
    /// 32..=1024).
    pub reduced_dims: u32,
    /// Seed of the rotation and of the tree splits.
    pub seed: u64,
    /// A build from fewer items than this rebuilds its forest once, when
    /// this many are live (0 = never): an index created on an empty or
    /// small table learns its tree space from the rows loaded later.
    pub rebuild_rows: u32,
}

/// Trees of an index built without `trees`. Twice as many trees as Annoy's
/// usual 8 find the ten nearest with far fewer candidates (hard 100k set:
/// recall@10 0.95 at search_k ~1000 instead of ~1700, 0.99 at ~3300
/// instead of more than 6000; BENCHMARKS.md), for 1.5× the index size and
/// 1.5–1.8× the build time.
pub const DEFAULT_TREES: u32 = 16;

impl Default for Options {
    fn default() -> Self {
        Options {
            trees: DEFAULT_TREES,
            leaf_size: 0,
            reduced_dims: 256,
            seed: 0x1A55_0C1A_7E5E_A12C,
            rebuild_rows: crate::rebuild::REBUILD_ROWS,
        }
    }
}

/// The index's pages do not hold what the format says they must.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    pub block: u32,
    pub detail: String,
    /// Not damage: the metapage is of another on-disk format version (an
    /// index built by another imgsim release, which must be rebuilt).
    pub old_format: Option<u32>,
}

impl Corruption {
    pub(crate) fn new(block: u32, detail: impl Into<String>) -> Self {
        Corruption {
            block,
            detail: detail.into(),
            old_format: None,
        }
    }

    pub(crate) fn old_format(version: u32) -> Self {
        Corruption {
            block: 0,
            detail: format!(
                "on-disk format version {version}, this imgsim reads version {}",
                format::FORMAT_VERSION
            ),
            old_format: Some(version),
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "index corrupted at block {}: {}",
            self.block, self.detail
        )
    }
}

impl std::error::Error for Corruption {}
