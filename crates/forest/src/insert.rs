//! Inserting items after the build (and streaming rows past the build's
//! memory budget, which goes through the same descent).
//!
//! Locks, in the order of the [`PageStore`] rules: an insert holds the
//! metapage while it stores the item record (in a free slot: its page, then
//! the next one if the vector continues there; or at the tail page, then any
//! new page), releases it, then descends each tree holding one page at a
//! time. A full leaf is split while holding it, then its parent, then the
//! pages it allocates; only such a split locks a split page exclusively,
//! always after the leaf below it, so no two inserts wait for each other in
//! a cycle.

use half::f16;

use crate::format::*;
use crate::items::{finish_insert, refill, ItemAppender, ItemLoc};
use crate::leaf::{self, Leaf};
use crate::meta::{Meta, META_BLOCK};
use crate::rebuild::rebuild_due;
use crate::space::TreeSpace;
use crate::store::{PageKind, PageStore};
use crate::{Corruption, Tid};

/// What an insert leaves for its caller to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    /// The index has grown to the size at which it wants its one rebuild
    /// ([`crate::rebuild`]), which needs a lock only the caller can take.
    pub rebuild_due: bool,
}

/// Adds one item: stores its record (in a free slot if VACUUM left one, else
/// at the end of the item chain), then an entry in a leaf of every tree.
/// Panics if `vector` does not have 2048 dimensions.
pub fn insert<S: PageStore>(store: &S, tid: Tid, vector: &[f16]) -> Result<Inserted, Corruption> {
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
    Ok(Inserted {
        rebuild_due: rebuild_due(&meta.header),
    })
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

/// Where the reference to a node lives: what must change when the node (a
/// leaf) is split in place.
#[derive(Clone, Copy, Debug)]
enum Parent {
    /// A tree root, in the metapage.
    Root,
    /// A split node of a split page.
    Split(NodeRef),
    /// The split node a leaf page holds instead of entries ([`LEAF_SPLIT`]).
    Holder(u32),
}

/// Descents of one tree an insert makes before giving up: it descends again
/// only when the leaf it reached was split in place meanwhile, which a
/// concurrent insert does at most once per 15 or so inserts into that leaf.
const MAX_DESCENTS: usize = 1000;

/// Descends tree `t` from `root` to the leaf for `new`, holding one page at
/// a time, and adds the entry there. A full leaf is split in place: half
/// its entries move to a new leaf and its parent gets the split node (the
/// leaf and the parent change in one logged change, the leaf locked first);
/// a full root leaf becomes a page holding the split node of two new leaves.
/// If the leaf was split since its parent was read (its version is not the
/// one the reference carries), the descent starts again.
pub(crate) fn add_to_tree<S: PageStore>(
    store: &S,
    root: NodeRef,
    t: usize,
    new: &NewEntry,
) -> Result<(), Corruption> {
    for _ in 0..MAX_DESCENTS {
        if descend_and_add(store, root, t, new)? {
            return Ok(());
        }
    }
    Err(Corruption::new(
        root.block,
        format!("tree {t}: the leaf for an insert changed {MAX_DESCENTS} times in a row"),
    ))
}

/// One descent of [`add_to_tree`]; `false` if the leaf it reached had been
/// split meanwhile.
fn descend_and_add<S: PageStore>(
    store: &S,
    root: NodeRef,
    t: usize,
    new: &NewEntry,
) -> Result<bool, Corruption> {
    let td = new.point.len();
    let capacity = leaf_capacity(store.body_size(), td);
    let mut node = root;
    let mut parent = Parent::Root;
    for depth in 0.. {
        if depth > MAX_TREE_DEPTH {
            return Err(Corruption::new(
                node.block,
                "tree path too deep: pages form a cycle",
            ));
        }
        match node.kind {
            NODE_SPLIT => {
                parent = Parent::Split(node);
                node = split_side(store, node, new.point)?;
            }
            NODE_LEAF => {
                check_kind(store, node.block, PageKind::Leaf)?;
                let mut page = store.write(node.block);
                let count = match leaf::parse(node.block, &page, td)? {
                    Leaf::Split(split_node) => {
                        parent = Parent::Holder(node.block);
                        node = side(split_margin(split_node, new.point));
                        continue;
                    }
                    Leaf::Entries(entries) => entries.len(),
                };
                if leaf::version(&page) != node.slot {
                    return Ok(false);
                }
                let extra = (new.entry, new.code);
                let seed = new.seed ^ ((t as u64) << 48);
                if count < capacity {
                    leaf::append(&mut page, count, &new.entry, new.code);
                } else if let Parent::Root = parent {
                    leaf::split(store, &mut page, td, extra, seed);
                } else {
                    // The parent joins the leaf's change; it must still point
                    // at this version of the leaf (only a holder of the leaf's
                    // lock repoints it).
                    let mut parent_page = store.write(parent_block(parent));
                    let link = ParentLink::find(parent, &parent_page, td, node)?;
                    let (split, split_normal) =
                        leaf::split_in_place(store, node.block, &mut page, td, extra, seed);
                    link.replace(store, &mut parent_page, td, &split, &split_normal);
                }
                return Ok(true);
            }
            NODE_EMPTY => return Ok(true),
            kind => return Err(Corruption::new(node.block, format!("bad node kind {kind}"))),
        }
    }
    unreachable!("the loop returns")
}

fn parent_block(parent: Parent) -> u32 {
    match parent {
        Parent::Root => unreachable!("a root's parent is the metapage"),
        Parent::Split(node) => node.block,
        Parent::Holder(block) => block,
    }
}

/// The child reference of a parent's split node that points at a leaf.
struct ParentLink {
    parent: Parent,
    /// Offset of the split node's header in the parent page's body.
    node_at: usize,
    header: SplitNodeHeader,
    left: bool,
}

impl ParentLink {
    /// Finds the reference to `leaf` in the parent's split node; refuses a
    /// parent that does not point at this version of the leaf.
    fn find(parent: Parent, page: &[u8], td: usize, leaf: NodeRef) -> Result<Self, Corruption> {
        let block = parent_block(parent);
        let node_at = match parent {
            Parent::Split(node) => {
                let count = SplitPageHeader::read(page).count;
                if node.slot >= count || count as usize > splits_per_page(page.len(), td) {
                    return Err(Corruption::new(
                        block,
                        format!("split slot {} of {count}", node.slot),
                    ));
                }
                SplitPageHeader::SIZE + node.slot as usize * split_node_bytes(td)
            }
            Parent::Holder(_) => match leaf::parse(block, page, td)? {
                Leaf::Split(_) => LeafPageHeader::SIZE,
                Leaf::Entries(_) => {
                    return Err(Corruption::new(block, "a split leaf lost its split node"))
                }
            },
            Parent::Root => unreachable!("a root's parent is the metapage"),
        };
        let header = SplitNodeHeader::read(&page[node_at..]);
        let left = if header.left == leaf {
            true
        } else if header.right == leaf {
            false
        } else {
            return Err(Corruption::new(
                block,
                format!("split node does not point at leaf {}", leaf.block),
            ));
        };
        Ok(ParentLink {
            parent,
            node_at,
            header,
            left,
        })
    }

    /// Points the parent at `split` instead of the leaf. The split goes into
    /// a free slot of the parent's split page; if that is full, into the
    /// page's overflow page (if it has room and no one holds it: it is locked
    /// out of the top-down order, so never waited for), else into a new
    /// split page (written and logged first), which becomes the overflow.
    fn replace<S: PageStore>(
        &self,
        store: &S,
        page: &mut [u8],
        td: usize,
        split: &SplitNodeHeader,
        normal: &[f32],
    ) {
        let per_page = splits_per_page(page.len(), td);
        let split_ref = match self.parent {
            Parent::Split(parent) => {
                let header = SplitPageHeader::read(page);
                if (header.count as usize) < per_page {
                    add_split_node(page, parent.block, td, split, normal)
                } else {
                    let overflow = (header.overflow != 0
                        && store.is_page_of(header.overflow, PageKind::Split))
                    .then(|| store.try_write(header.overflow))
                    .flatten()
                    .filter(|o| (SplitPageHeader::read(o).count as usize) < per_page);
                    match overflow {
                        Some(mut o) => add_split_node(&mut o, header.overflow, td, split, normal),
                        None => {
                            let new = new_split_page(store, td, split, normal);
                            SplitPageHeader {
                                overflow: new.block,
                                ..header
                            }
                            .write(page);
                            new
                        }
                    }
                }
            }
            Parent::Holder(_) => new_split_page(store, td, split, normal),
            Parent::Root => unreachable!("a root's parent is the metapage"),
        };
        let mut header = self.header;
        if self.left {
            header.left = split_ref;
        } else {
            header.right = split_ref;
        }
        header.write(&mut page[self.node_at..]);
    }
}

/// Adds a split node to split page `block` (body `page`, not full);
/// returns its reference.
fn add_split_node(
    page: &mut [u8],
    block: u32,
    td: usize,
    split: &SplitNodeHeader,
    normal: &[f32],
) -> NodeRef {
    let node_bytes = split_node_bytes(td);
    let header = SplitPageHeader::read(page);
    let at = SplitPageHeader::SIZE + header.count as usize * node_bytes;
    write_split_node(split, normal, &mut page[at..at + node_bytes]);
    SplitPageHeader {
        count: header.count + 1,
        ..header
    }
    .write(page);
    NodeRef::split(block, header.count)
}

/// A new split page holding one split node; returns its reference.
fn new_split_page<S: PageStore>(
    store: &S,
    td: usize,
    split: &SplitNodeHeader,
    normal: &[f32],
) -> NodeRef {
    let (block, mut page) = store.allocate(PageKind::Split);
    add_split_node(&mut page, block, td, split, normal)
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
    let page = split_page(store, node, normal.len())?;
    let at = SplitPageHeader::SIZE + node.slot as usize * split_node_bytes(normal.len());
    Ok(read_split_node(&page[at..], normal))
}

/// The split page holding split node `node` of a tree space of
/// `reduced_dims`, checked to hold that node.
fn split_page<S: PageStore>(
    store: &S,
    node: NodeRef,
    reduced_dims: usize,
) -> Result<S::Read<'_>, Corruption> {
    let page = store
        .read_kind(node.block, PageKind::Split)
        .ok_or_else(|| {
            Corruption::new(
                node.block,
                "tree points at a block that is not a Split page",
            )
        })?;
    let count = SplitPageHeader::read(&page).count;
    if node.slot >= count || count as usize > splits_per_page(page.len(), reduced_dims) {
        return Err(Corruption::new(
            node.block,
            format!("split slot {} of {count}", node.slot),
        ));
    }
    Ok(page)
}

/// The child of split node `node` on `point`'s side.
fn split_side<S: PageStore>(
    store: &S,
    node: NodeRef,
    point: &[f32],
) -> Result<NodeRef, Corruption> {
    let page = split_page(store, node, point.len())?;
    let at = SplitPageHeader::SIZE + node.slot as usize * split_node_bytes(point.len());
    Ok(side(split_margin(&page[at..], point)))
}

fn side((split, margin): (SplitNodeHeader, f32)) -> NodeRef {
    if margin > 0.0 {
        split.right
    } else {
        split.left
    }
}
