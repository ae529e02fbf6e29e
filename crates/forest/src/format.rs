//! On-disk format: every page struct, magic number and the format version.
//!
//! All structs are `#[repr(C)]` plain old data without padding, stored
//! little-endian and moved to and from page bodies by copying (never by
//! reference, so page bodies need no alignment).
//!
//! Page kinds and their bodies (the glue keeps the page header and records the
//! kind in the special area; these layouts describe the body only):
//!
//! * **Meta** (block 0): [`MetaHeader`], then `MAX_TREES` [`NodeRef`] roots at
//!   [`META_ROOTS_OFFSET`].
//! * **Basis** (`basis_pages` consecutive blocks from `basis_block`, written
//!   once by the build): the tree space's linear map as one byte stream
//!   filling whole bodies: `reduced_dims` f32 offsets, then `reduced_dims`
//!   rows of 2048 f16 (see [`crate::space::Basis`]). `basis_checksum` in the metapage
//!   is [`basis_checksum`] of the stream.
//! * **Item**: [`ItemPageHeader`], then fixed-size item records
//!   ([`ItemRecordHeader`] + 2048 f16) packed back to back. Two records do not
//!   fit in one body, so a record's vector may continue at the start of the
//!   next page of the item chain (`next`); the record header itself never
//!   straddles. Every item is stored once, here. VACUUM threads the records
//!   of removed items onto a free list (head in the metapage, links in the
//!   records' `tid` field) and inserts refill those slots before growing the
//!   chain.
//! * **Split**: [`SplitPageHeader`], then up to [`splits_per_page`] nodes of
//!   [`SplitNodeHeader`] + normal (`reduced_dims` f32).
//! * **Leaf**: one leaf per page: [`LeafPageHeader`], then entries of
//!   [`LeafEntryHeader`] + int8 code (`reduced_dims` rounded up to 4 bytes). The
//!   code lets a candidate be scored without reading its item page. A leaf
//!   split by an insert holds a split node instead ([`LEAF_SPLIT`]).

use std::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Magic number at the start of the metapage body ("ANFR").
pub const META_MAGIC: u32 = 0x414E_4652;
/// Bumped on every incompatible change of any layout in this file.
pub const FORMAT_VERSION: u32 = 3;
/// Dimensions of every indexed vector.
pub const DIMS: usize = 2048;
/// Bytes of one stored full vector.
pub const VECTOR_BYTES: usize = DIMS * 2;
/// Upper bound on `trees`; the metapage reserves this many root slots.
pub const MAX_TREES: usize = 64;
/// Deeper paths mean a cycle in corrupted pages. Build trees are balanced
/// (depth ≈ log4/3 of the leaf count); leaf splits by inserts add one level
/// each, so real trees stay far below this.
pub const MAX_TREE_DEPTH: u16 = 1024;
/// Allowed reduced dimensions: powers of two in this range.
pub const MIN_REDUCED_DIMS: usize = 32;
pub const MAX_REDUCED_DIMS: usize = 1024;

// The structs are stored in the machine's byte order, which the format
// defines as little-endian.
#[cfg(target_endian = "big")]
compile_error!("the annoy on-disk format is little-endian");

/// A fixed-layout value copied out of / into page bytes (which need no
/// alignment). Implemented for every zerocopy plain-old-data type.
pub trait OnDisk: FromBytes + IntoBytes + Immutable + Sized {
    const SIZE: usize = size_of::<Self>();
    /// Reads from the first `SIZE` bytes. Panics if `b` is shorter: callers
    /// bound-check offsets that come from disk before calling.
    fn read(b: &[u8]) -> Self {
        Self::read_from_prefix(b).expect("slice length checked").0
    }
    fn write(&self, b: &mut [u8]) {
        b[..Self::SIZE].copy_from_slice(self.as_bytes());
    }
}

impl<T: FromBytes + IntoBytes + Immutable> OnDisk for T {}

/// Declares an on-disk struct: `#[repr(C)]`, derived as plain old data by
/// zerocopy (which refuses padding), with its size asserted.
macro_rules! on_disk_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: $ty:ty,)* } size = $size:expr;) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout)]
        pub struct $name { $($(#[$fm])* pub $field: $ty,)* }
        const _: () = assert!(size_of::<$name>() == $size);
    };
}

/// Kinds of tree node a [`NodeRef`] can point at.
pub const NODE_EMPTY: u16 = 0;
pub const NODE_SPLIT: u16 = 1;
pub const NODE_LEAF: u16 = 2;

on_disk_struct! {
    /// Reference to a tree node: a split node (`block`, `slot`) or a leaf page
    /// (`block`, its [`LeafPageHeader::version`] in `slot`). `kind ==
    /// NODE_EMPTY` is the root of an empty tree.
    pub struct NodeRef {
        pub block: u32,
        pub slot: u16,
        pub kind: u16,
    }
    size = 8;
}

impl NodeRef {
    pub const EMPTY: NodeRef = NodeRef {
        block: 0,
        slot: 0,
        kind: NODE_EMPTY,
    };
    /// A leaf as built (version 0).
    pub fn leaf(block: u32) -> Self {
        Self::leaf_version(block, 0)
    }
    pub fn leaf_version(block: u32, version: u16) -> Self {
        NodeRef {
            block,
            slot: version,
            kind: NODE_LEAF,
        }
    }
    pub fn split(block: u32, slot: u16) -> Self {
        NodeRef {
            block,
            slot,
            kind: NODE_SPLIT,
        }
    }
}

on_disk_struct! {
    /// Start of the metapage body.
    pub struct MetaHeader {
        pub magic: u32,
        pub version: u32,
        pub dims: u32,
        /// [`crate::Metric`] as u32.
        pub metric: u32,
        /// D': coordinates of the tree space.
        pub reduced_dims: u32,
        pub trees: u32,
        pub leaf_size: u32,
        /// First of the basis pages and their number.
        pub basis_block: u32,
        pub basis_pages: u32,
        /// Live items at which the forest is rebuilt once from the stored
        /// items (see [`crate::rebuild`]); 0 = never. Set by a build from
        /// fewer items, cleared by the rebuild. (Indexes written before this
        /// field existed hold 0 here.)
        pub rebuild_at: u32,
        /// Seed of the tree splits (and of the basis's random parts).
        pub seed: u64,
        /// [`basis_checksum`] of the basis pages' contents.
        pub basis_checksum: u64,
        /// Item record slots in the chain (live, deleted and free).
        pub item_count: u64,
        /// Item records not marked deleted.
        pub live_count: u64,
        /// Item records on the free list.
        pub free_count: u64,
        /// First and last page of the item chain (0 = none).
        pub item_head: u32,
        pub item_tail: u32,
        /// Bytes of the tail page body in use (header included).
        pub item_tail_used: u32,
        /// First record of the free list (block 0 = empty list).
        pub free_block: u32,
        pub free_offset: u16,
        /// 1 from the start of a compaction to its end ([`crate::compact`]):
        /// one cut off may have left unreachable pages to give back.
        pub compacting: u16,
        /// Live records that are copies a compaction made and has not yet
        /// switched to (a compaction cut off before its switch leaves them,
        /// in no tree: see [`crate::compact`]). 0 in older indexes.
        pub copies_pending: u32,
    }
    size = 104;
}

/// Bytes of the basis stream: `reduced_dims` f32 offsets, then
/// `reduced_dims` rows of 2048 f16.
pub fn basis_bytes(reduced_dims: usize) -> usize {
    reduced_dims * (4 + 2 * DIMS)
}

/// Pages the basis stream fills.
pub fn basis_pages(body_size: usize, reduced_dims: usize) -> usize {
    basis_bytes(reduced_dims).div_ceil(body_size)
}

/// Checksum of the basis stream (64-bit multiply–xorshift over its
/// little-endian words): identifies a basis in caches and detects damaged
/// basis pages.
pub fn basis_checksum(stream: &[u8]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64 ^ stream.len() as u64;
    for word in stream.chunks(8) {
        let mut w = [0u8; 8];
        w[..word.len()].copy_from_slice(word);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

pub const META_ROOTS_OFFSET: usize = MetaHeader::SIZE;
const _: () = assert!(META_ROOTS_OFFSET + MAX_TREES * NodeRef::SIZE <= 8152);

on_disk_struct! {
    /// Start of every item page body.
    pub struct ItemPageHeader {
        /// Next page of the item chain (0 = end).
        pub next: u32,
        /// Bytes at the start of the body that continue the previous page's
        /// last record.
        pub continued_bytes: u16,
        /// Records whose header is on this page.
        pub records_started: u16,
    }
    size = 8;
}

/// Item record flag: an insert stored the record and has not yet added it to
/// every tree. Cleared when it has; a crash in between leaves it set (the
/// row's transaction never committed, and VACUUM removes the item).
pub const ITEM_INSERTING: u16 = 4;
/// Item record flag: the heap row is gone (VACUUM); scans skip the record.
/// Leaf entries may still point at it until VACUUM has removed them.
pub const ITEM_DELETED: u16 = 1;
/// Item record flag (always with [`ITEM_DELETED`]): no leaf entry points at
/// the record any more and it is on the free list, its `tid` field holding
/// the next free record's location (see [`ItemRecordHeader::free`]).
pub const ITEM_FREE: u16 = 2;

on_disk_struct! {
    /// Header of an item record; the 2048 f16 of the vector follow.
    pub struct ItemRecordHeader {
        /// Heap TID, opaque: block (u32 LE) and offset (u16 LE).
        pub tid: [u8; 6],
        pub flags: u16,
        /// Squared L2 norm of the stored vector (cosine distance, checks).
        pub norm_sq: f32,
        pub reserved: u32,
    }
    size = 16;
}

impl ItemRecordHeader {
    /// The header of a live item: `flags` 0 when stored by a build, or
    /// [`ITEM_INSERTING`] when stored by an insert.
    pub fn live(tid: crate::Tid, norm_sq: f32, flags: u16) -> Self {
        ItemRecordHeader {
            tid: tid.to_bytes(),
            flags,
            norm_sq,
            reserved: 0,
        }
    }

    /// This record put on the free list in front of `next` (block 0 = end).
    pub fn free(self, next_block: u32, next_offset: u16) -> Self {
        let link = crate::Tid {
            block: next_block,
            offset: next_offset,
        };
        ItemRecordHeader {
            tid: link.to_bytes(),
            flags: ITEM_DELETED | ITEM_FREE,
            ..self
        }
    }

    /// The next free record after this free one: `(block, offset)`.
    pub fn free_link(&self) -> (u32, u16) {
        let link = crate::Tid::from_bytes(self.tid);
        (link.block, link.offset)
    }
}

pub const ITEM_RECORD_BYTES: usize = ItemRecordHeader::SIZE + VECTOR_BYTES;

on_disk_struct! {
    pub struct SplitPageHeader {
        pub count: u16,
        pub reserved0: u16,
        /// A split page that took the split nodes of leaves below this page
        /// once this page was full (0 = none yet): inserts fill it before
        /// allocating another, so leaf splits under a full page of a build
        /// share pages instead of taking one each.
        pub overflow: u32,
    }
    size = 8;
}

on_disk_struct! {
    /// A split node; its unit normal (`reduced_dims` f32) follows. A point `v`
    /// of the tree space goes right when `normal·v + offset > 0`.
    pub struct SplitNodeHeader {
        pub left: NodeRef,
        pub right: NodeRef,
        pub offset: f32,
        pub reserved: u32,
    }
    size = 24;
}

on_disk_struct! {
    pub struct LeafPageHeader {
        /// Entries on the page (0 when `LEAF_SPLIT` is set).
        pub count: u16,
        pub flags: u16,
        /// Times an insert split this leaf in place (mod 2^16). The
        /// reference to a leaf carries the version it points at in its
        /// `slot`, so an insert that read a parent before the leaf was
        /// split sees the change and descends again.
        pub version: u16,
        pub reserved: [u8; 10],
    }
    size = 16;
}

/// Leaf flag: an insert split this leaf; the page now holds one split node
/// ([`SplitNodeHeader`] + normal right after the header) whose children are
/// two new leaves. This split needs no change to the parent, so inserts use
/// it for a root leaf (whose parent is the metapage); every other leaf is
/// split in place (see `leaf::split_in_place`).
pub const LEAF_SPLIT: u16 = 1;

on_disk_struct! {
    /// A leaf entry; the item's int8 code follows (`code_stride` bytes).
    /// The item's centred tree-space vector is approximately `scale * code`.
    pub struct LeafEntryHeader {
        pub item_block: u32,
        pub item_offset: u16,
        pub reserved: u16,
        pub scale: f32,
        /// `scale² · |code|²`, precomputed for scoring.
        pub code_norm_sq: f32,
    }
    size = 16;
}

/// Bytes of a code: `reduced_dims` rounded up to a multiple of 4.
pub fn code_stride(reduced_dims: usize) -> usize {
    reduced_dims.div_ceil(4) * 4
}

pub fn leaf_entry_bytes(reduced_dims: usize) -> usize {
    LeafEntryHeader::SIZE + code_stride(reduced_dims)
}

/// Entries that fit in one leaf page body.
pub fn leaf_capacity(body_size: usize, reduced_dims: usize) -> usize {
    body_size.saturating_sub(LeafPageHeader::SIZE) / leaf_entry_bytes(reduced_dims)
}

pub fn split_node_bytes(reduced_dims: usize) -> usize {
    SplitNodeHeader::SIZE + 4 * reduced_dims
}

pub fn splits_per_page(body_size: usize, reduced_dims: usize) -> usize {
    body_size.saturating_sub(SplitPageHeader::SIZE) / split_node_bytes(reduced_dims)
}

/// Reads a split node (header, then normal into `normal`) starting at `b[0]`.
pub fn read_split_node(b: &[u8], normal: &mut [f32]) -> SplitNodeHeader {
    read_f32s(&b[SplitNodeHeader::SIZE..], normal);
    SplitNodeHeader::read(b)
}

/// A split node's header and a tree-space point's margin `normal·x +
/// offset` (> 0: the right side), the normal read in place from the node's
/// bytes rather than copied out.
pub fn split_margin(node: &[u8], point: &[f32]) -> (SplitNodeHeader, f32) {
    let header = SplitNodeHeader::read(node);
    let margin =
        header.offset + imgsim_kernels::dot_f32_le_bytes(point, &node[SplitNodeHeader::SIZE..]);
    (header, margin)
}

pub fn write_split_node(header: &SplitNodeHeader, normal: &[f32], b: &mut [u8]) {
    header.write(b);
    write_f32s(normal, &mut b[SplitNodeHeader::SIZE..]);
}

/// Reads `out.len()` consecutive f32 values.
pub fn read_f32s(b: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

pub fn write_f32s(values: &[f32], b: &mut [u8]) {
    for (v, c) in values.iter().zip(b.chunks_exact_mut(4)) {
        c.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_round_trip() {
        assert_eq!(NodeRef::SIZE, 8);
        assert_eq!(MetaHeader::SIZE, 104);
        assert_eq!(ItemPageHeader::SIZE, 8);
        assert_eq!(ItemRecordHeader::SIZE, 16);
        assert_eq!(SplitPageHeader::SIZE, 8);
        assert_eq!(SplitNodeHeader::SIZE, 24);
        assert_eq!(LeafPageHeader::SIZE, 16);
        assert_eq!(LeafEntryHeader::SIZE, 16);
        let h = SplitNodeHeader {
            left: NodeRef::leaf(7),
            right: NodeRef::split(9, 3),
            offset: -1.5,
            reserved: 0,
        };
        let mut buf = [0u8; 24];
        h.write(&mut buf);
        assert_eq!(SplitNodeHeader::read(&buf), h);
        assert_eq!(&buf[..4], &7u32.to_le_bytes());
        // Two full records do not fit one 8152-byte body; records straddle.
        const { assert!(2 * ITEM_RECORD_BYTES > 8152 - ItemPageHeader::SIZE) };
        assert_eq!(leaf_capacity(8152, 256), 29);
        assert_eq!(splits_per_page(8152, 256), 7);
    }
}
