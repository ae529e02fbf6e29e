//! Inserting items after the build (and streaming rows past the build's
//! memory budget, which goes through the same descent).
//!
//! Locks, in the order of the [`PageStore`] rules: an insert holds the
//! metapage while it stores the item record (in a free slot: its page, then
//! the next one if the vector continues there; or at the tail page, then any
//! new page), releases it, then descends each tree holding one page at a
//! time; a full leaf is split while holding it and the two new leaves it
//! allocates.

use half::f16;

use crate::format::*;
use crate::items::{finish_insert, refill, ItemAppender, ItemLoc};
use crate::leaf::{self, Leaf};
use crate::meta::{Meta, META_BLOCK};
use crate::space::{dot_f32, TreeSpace};
use crate::store::{PageKind, PageStore};
use crate::{Corruption, Tid};

/// Adds one item: stores its record (in a free slot if VACUUM left one, else
/// at the end of the item chain), then an entry in a leaf of every tree.
/// Panics if `vector` does not have 2048 dimensions.
pub fn insert<S: PageStore>(store: &S, tid: Tid, vector: &[f16]) -> Result<(), Corruption> {
    assert_eq!(vector.len(), DIMS, "vector must have {DIMS} dimensions");
    let norm_sq = imgsim_kernels::norm_squared(vector);
    let record = ItemRecordHeader::live(tid, norm_sq, ITEM_INSERTING);

    let mut meta_page = store.write(META_BLOCK);
    let mut meta = Meta::parse(store, &meta_page)?;
    let coded = CodedPoint::of(&meta.space, vector, norm_sq);
    let (code, point) = (&coded.code, &coded.point);

    let loc = store_record(store, &mut meta.header, record, vector)?;
    let entry = coded.entry(loc);

    // Trees of an index built empty get their first leaf now, holding the item.
    let planted: Vec<bool> = meta.roots.iter().map(|r| r.kind == NODE_EMPTY).collect();
    for root in meta.roots.iter_mut().filter(|r| r.kind == NODE_EMPTY) {
        let (block, _leaf) = leaf::write_new(store, std::iter::once((entry, &code[..])));
        *root = NodeRef::leaf(block);
    }
    meta.write_to(&mut meta_page);
    drop(meta_page);

    let new_entry = NewEntry {
        entry,
        code,
        point,
        seed: meta.header.seed ^ loc.key(),
    };
    for (t, root) in meta.roots.iter().enumerate().filter(|&(t, _)| !planted[t]) {
        add_to_tree(store, *root, t, &new_entry)?;
    }
    finish_insert(store, loc);
    Ok(())
}

/// An item coded for the trees: its int8 code (`code_stride` bytes) with
/// the code's scale and scaled squared norm, and its tree-space point.
pub(crate) struct CodedPoint {
    pub code: Vec<u8>,
    pub scale: f32,
    pub code_norm_sq: f32,
    pub point: Vec<f32>,
}

impl CodedPoint {
    pub fn of(space: &TreeSpace, vector: &[f16], norm_sq: f32) -> Self {
        let d = space.reduced_dims;
        let mut reduced = vec![f16::ZERO; d];
        space.reduce_item(vector, norm_sq, &mut reduced);
        let mut code = vec![0u8; code_stride(d)];
        let (scale, code_norm_sq) = space.item_code(&reduced, &mut code[..d]);
        let mut point = vec![0f32; d];
        space.item_vector(&reduced, &mut point);
        CodedPoint {
            code,
            scale,
            code_norm_sq,
            point,
        }
    }

    /// Its leaf entry, for the record at `loc`.
    pub fn entry(&self, loc: ItemLoc) -> LeafEntryHeader {
        LeafEntryHeader {
            item_block: loc.block,
            item_offset: loc.offset,
            reserved: 0,
            scale: self.scale,
            code_norm_sq: self.code_norm_sq,
        }
    }
}

/// A leaf entry to add to the trees: the entry with its code, the item's
/// tree-space point (which side of each split it goes) and the seed of any
/// leaf split it causes.
pub(crate) struct NewEntry<'a> {
    pub entry: LeafEntryHeader,
    pub code: &'a [u8],
    pub point: &'a [f32],
    pub seed: u64,
}

/// Descends tree `t` from `root` to the leaf for `new`, holding one page at
/// a time, and adds the entry there; a full leaf is split (under its lock,
/// with the two leaves it allocates).
pub(crate) fn add_to_tree<S: PageStore>(
    store: &S,
    root: NodeRef,
    t: usize,
    new: &NewEntry,
) -> Result<(), Corruption> {
    let td = new.point.len();
    let capacity = leaf_capacity(store.body_size(), td);
    let mut normal = vec![0f32; td];
    let mut node = root;
    for depth in 0.. {
        if depth > MAX_TREE_DEPTH {
            return Err(Corruption::new(
                node.block,
                "tree path too deep: pages form a cycle",
            ));
        }
        match node.kind {
            NODE_SPLIT => {
                let split = read_split(store, node, &mut normal)?;
                node = side(&split, &normal, new.point);
            }
            NODE_LEAF => {
                check_kind(store, node.block, PageKind::Leaf)?;
                let mut page = store.write(node.block);
                let count = match leaf::parse(node.block, &page, td)? {
                    Leaf::Split(split_node) => {
                        let split = read_split_node(split_node, &mut normal);
                        node = side(&split, &normal, new.point);
                        continue;
                    }
                    Leaf::Entries(entries) => entries.len(),
                };
                if count < capacity {
                    leaf::append(&mut page, count, &new.entry, new.code);
                } else {
                    let seed = new.seed ^ ((t as u64) << 48);
                    leaf::split(store, &mut page, td, (new.entry, new.code), seed);
                }
                return Ok(());
            }
            NODE_EMPTY => return Ok(()),
            kind => return Err(Corruption::new(node.block, format!("bad node kind {kind}"))),
        }
    }
    unreachable!("the loop returns")
}

/// Stores a new record while the caller holds the metapage (whose header is
/// `h`): in the first free slot, or appended at the tail of the item chain.
fn store_record<S: PageStore>(
    store: &S,
    h: &mut MetaHeader,
    record: ItemRecordHeader,
    vector: &[f16],
) -> Result<ItemLoc, Corruption> {
    if h.free_block != 0 {
        let loc = ItemLoc {
            block: h.free_block,
            offset: h.free_offset,
        };
        (h.free_block, h.free_offset) = refill(store, loc, record, vector)?;
        h.free_count -= 1; // Meta::parse checked free_count > 0
        h.live_count += 1;
        return Ok(loc);
    }
    let tail = h.item_tail;
    if !store.is_page_of(tail, PageKind::Item) {
        return Err(Corruption::new(
            META_BLOCK,
            "item chain tail is not an item page",
        ));
    }
    let tail_used = h.item_tail_used as usize;
    if tail_used < ItemPageHeader::SIZE || tail_used > store.body_size() {
        return Err(Corruption::new(
            META_BLOCK,
            "item chain tail usage out of range",
        ));
    }
    let mut appender = ItemAppender::resume(store, tail, tail_used);
    let loc = appender.append(record, vector);
    (h.item_tail, h.item_tail_used) = appender.finish();
    h.item_count += 1;
    h.live_count += 1;
    Ok(loc)
}

pub(crate) fn check_kind<S: PageStore>(
    store: &S,
    block: u32,
    kind: PageKind,
) -> Result<(), Corruption> {
    if !store.is_page_of(block, kind) {
        return Err(Corruption::new(
            block,
            format!("tree points at a block that is not a {kind:?} page"),
        ));
    }
    Ok(())
}

pub(crate) fn read_split<S: PageStore>(
    store: &S,
    node: NodeRef,
    normal: &mut [f32],
) -> Result<SplitNodeHeader, Corruption> {
    let page = store
        .read_kind(node.block, PageKind::Split)
        .ok_or_else(|| {
            Corruption::new(
                node.block,
                "tree points at a block that is not a Split page",
            )
        })?;
    let count = SplitPageHeader::read(&page).count;
    if node.slot >= count || count as usize > splits_per_page(page.len(), normal.len()) {
        return Err(Corruption::new(
            node.block,
            format!("split slot {} of {count}", node.slot),
        ));
    }
    let at = SplitPageHeader::SIZE + node.slot as usize * split_node_bytes(normal.len());
    Ok(read_split_node(&page[at..], normal))
}

fn side(split: &SplitNodeHeader, normal: &[f32], point: &[f32]) -> NodeRef {
    let margin = split.offset + dot_f32(normal, point);
    if margin > 0.0 {
        split.right
    } else {
        split.left
    }
}
