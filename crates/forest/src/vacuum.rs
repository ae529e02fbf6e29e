//! VACUUM's bulk delete: dead items' leaf entries removed, their records
//! put on the free list for inserts to reuse.
//!
//! Locks, in the order of the [`PageStore`] rules: bulk delete reads one
//! page at a time and changes an item page only together with the metapage
//! (metapage first).

use std::collections::HashSet;

use crate::format::*;
use crate::insert::{check_kind, read_split};
use crate::items::ItemLoc;
use crate::leaf::{self, Leaf};
use crate::meta::{Meta, META_BLOCK};
use crate::store::{PageKind, PageStore};
use crate::{Corruption, Tid};

/// What [`bulk_delete`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteStats {
    /// Items newly marked deleted.
    pub deleted: u64,
    /// Live items left.
    pub live: u64,
    /// Leaf entries removed (one per tree per deleted item).
    pub leaf_entries_removed: u64,
    /// Item records put on the free list for inserts to reuse.
    pub freed: u64,
}

/// VACUUM: marks every live item whose heap TID `is_dead` deleted, removes
/// its leaf entries, then puts its record on the free list, where inserts
/// reuse it. Each step is safe to interrupt: the next VACUUM finishes
/// records left deleted but not freed.
pub fn bulk_delete<S: PageStore>(
    store: &S,
    is_dead: &mut dyn FnMut(Tid) -> bool,
) -> Result<DeleteStats, Corruption> {
    let meta = Meta::read(store)?;
    let body = store.body_size();
    let mut dead: HashSet<ItemLoc> = HashSet::new();
    let mut stats = DeleteStats::default();

    // Item chain: flag dead records. Record headers never straddle pages.
    let mut block = meta.header.item_head;
    let mut visited = HashSet::new();
    while block != 0 {
        check_kind(store, block, PageKind::Item)?;
        if !visited.insert(block) {
            return Err(Corruption::new(block, "item chain loops"));
        }
        // Newly dead live records, and records an interrupted VACUUM flagged
        // but did not put on the free list.
        let (next_block, dying, unfinished) = {
            let page = store.read(block);
            let page_header = ItemPageHeader::read(&page);
            let mut dying = Vec::new();
            let mut unfinished = Vec::new();
            let mut offset = ItemPageHeader::SIZE + page_header.continued_bytes as usize;
            for _ in 0..page_header.records_started {
                if offset + ItemRecordHeader::SIZE > body {
                    return Err(Corruption::new(
                        block,
                        "more records started than fit the page",
                    ));
                }
                let r = ItemRecordHeader::read(&page[offset..]);
                if r.flags & ITEM_DELETED == 0 {
                    if is_dead(Tid::from_bytes(r.tid)) {
                        dying.push(offset);
                    }
                } else if r.flags & ITEM_FREE == 0 {
                    unfinished.push(offset);
                }
                offset += ITEM_RECORD_BYTES;
            }
            (page_header.next, dying, unfinished)
        };
        if !dying.is_empty() {
            // The live count changes with the flags, in one change.
            let mut meta_page = store.write(META_BLOCK);
            let mut page = store.write(block);
            for &o in &dying {
                let mut r = ItemRecordHeader::read(&page[o..]);
                r.flags = ITEM_DELETED;
                r.write(&mut page[o..]);
            }
            let mut header = MetaHeader::read(&meta_page);
            header.live_count = header.live_count.saturating_sub(dying.len() as u64);
            header.write(&mut meta_page);
            stats.deleted += dying.len() as u64;
        }
        dead.extend(dying.into_iter().chain(unfinished).map(|o| ItemLoc {
            block,
            offset: o as u16,
        }));
        block = next_block;
    }

    // Trees: drop entries of dead items from every leaf.
    if !dead.is_empty() {
        let td = meta.reduced_dims();
        let mut normal = vec![0f32; td];
        for root in &meta.roots {
            let mut stack = vec![Pending {
                node: *root,
                depth: 0,
                parent: None,
            }];
            while let Some(pending) = stack.pop() {
                let Pending { node, depth, .. } = pending;
                if depth > MAX_TREE_DEPTH {
                    return Err(Corruption::new(
                        node.block,
                        "tree path too deep: pages form a cycle",
                    ));
                }
                match node.kind {
                    NODE_EMPTY => {}
                    NODE_SPLIT => {
                        let split = read_split(store, node, &mut normal)?;
                        stack.extend(Pending::children(&split, node, depth));
                    }
                    NODE_LEAF => {
                        check_kind(store, node.block, PageKind::Leaf)?;
                        // Look under a share lock; lock exclusively (and look
                        // again: an insert may have changed or split the
                        // leaf in between) only when there is something to remove.
                        let page = store.read(node.block);
                        // An insert split the leaf in place since its parent
                        // was read: look where its entries went.
                        let moved = leaf::version(&page) != node.slot;
                        let any_dead = match leaf::parse(node.block, &page, td)? {
                            Leaf::Split(split_node) => {
                                let split = read_split_node(split_node, &mut normal);
                                stack.extend(Pending::children(&split, node, depth));
                                continue;
                            }
                            Leaf::Entries(_) if moved => None,
                            Leaf::Entries(entries) => {
                                Some(entries.iter().any(|(e, _)| dead.contains(&e.item())))
                            }
                        };
                        drop(page);
                        let Some(any_dead) = any_dead else {
                            stack.push(pending.moved(store, td, &mut normal)?);
                            continue;
                        };
                        if any_dead {
                            let mut page = store.write(node.block);
                            match leaf::parse(node.block, &page, td)? {
                                Leaf::Split(split_node) => {
                                    let split = read_split_node(split_node, &mut normal);
                                    stack.extend(Pending::children(&split, node, depth));
                                }
                                Leaf::Entries(_) if leaf::version(&page) != node.slot => {
                                    drop(page);
                                    stack.push(pending.moved(store, td, &mut normal)?);
                                }
                                Leaf::Entries(entries) => {
                                    let count = entries.len();
                                    let removed = leaf::remove_dead(&mut page, count, td, &dead);
                                    stats.leaf_entries_removed += removed as u64;
                                }
                            }
                        }
                    }
                    kind => {
                        return Err(Corruption::new(node.block, format!("bad node kind {kind}")))
                    }
                }
            }
        }
    }

    // No leaf points at the dead records now.
    let mut dead: Vec<ItemLoc> = dead.into_iter().collect();
    free_records(store, &mut dead);
    stats.freed = dead.len() as u64;
    stats.live = MetaHeader::read(&store.read(META_BLOCK)).live_count;
    Ok(stats)
}

/// Puts deleted records that no leaf points at on the free list, a page
/// at a time, each page's records and the list head in one change.
pub(crate) fn free_records<S: PageStore>(store: &S, dead: &mut [ItemLoc]) {
    dead.sort_unstable();
    for page_records in dead.chunk_by(|a, b| a.block == b.block) {
        let mut meta_page = store.write(META_BLOCK);
        let mut header = MetaHeader::read(&meta_page);
        let mut page = store.write(page_records[0].block);
        let mut next = (header.free_block, header.free_offset);
        for loc in page_records.iter().rev() {
            let at = loc.offset as usize;
            let record = ItemRecordHeader::read(&page[at..]);
            record.free(next.0, next.1).write(&mut page[at..]);
            next = (loc.block, loc.offset);
        }
        (header.free_block, header.free_offset) = next;
        header.free_count += page_records.len() as u64;
        header.write(&mut meta_page);
    }
}

/// A node the tree walk of [`bulk_delete`] has yet to visit, with the split
/// node whose child reference it came from.
#[derive(Clone, Copy)]
struct Pending {
    node: NodeRef,
    depth: u16,
    /// The split node (a split page's, or one a leaf page holds: a leaf
    /// reference) and whether `node` was its left child; `None` for a root.
    parent: Option<(NodeRef, bool)>,
}

impl Pending {
    fn children(split: &SplitNodeHeader, of: NodeRef, depth: u16) -> [Pending; 2] {
        [(split.left, true), (split.right, false)].map(|(node, left)| Pending {
            node,
            depth: depth + 1,
            parent: Some((of, left)),
        })
    }

    /// This leaf was split in place by an insert since its parent was read
    /// (its version moved on), so some of its entries are now in leaves the
    /// walk has not seen: the parent's reference, read again, names the
    /// split node that now covers all of them (a parent is only ever
    /// repointed from the leaf to that split). A root leaf is never split in
    /// place.
    fn moved<S: PageStore>(
        self,
        store: &S,
        td: usize,
        normal: &mut [f32],
    ) -> Result<Pending, Corruption> {
        let Some((parent, left)) = self.parent else {
            return Err(Corruption::new(
                self.node.block,
                "root leaf reference names another version",
            ));
        };
        let split = match parent.kind {
            NODE_SPLIT => read_split(store, parent, normal)?,
            _ => {
                check_kind(store, parent.block, PageKind::Leaf)?;
                match leaf::parse(parent.block, &store.read(parent.block), td)? {
                    Leaf::Split(split_node) => read_split_node(split_node, normal),
                    Leaf::Entries(_) => {
                        return Err(Corruption::new(
                            parent.block,
                            "a split leaf lost its split node",
                        ))
                    }
                }
            }
        };
        let node = if left { split.left } else { split.right };
        if node == self.node {
            return Err(Corruption::new(
                self.node.block,
                "leaf version differs from its parent's reference",
            ));
        }
        Ok(Pending { node, ..self })
    }
}
