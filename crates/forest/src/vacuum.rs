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
            let mut stack = vec![(*root, 0)];
            while let Some((node, depth)) = stack.pop() {
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
                        stack.extend([(split.left, depth + 1), (split.right, depth + 1)]);
                    }
                    NODE_LEAF => {
                        check_kind(store, node.block, PageKind::Leaf)?;
                        // Look under a share lock; lock exclusively (and look
                        // again: an insert may have changed or split the
                        // leaf in between) only when there is something to remove.
                        let any_dead = match leaf::parse(node.block, &store.read(node.block), td)? {
                            Leaf::Split(split_node) => {
                                let split = read_split_node(split_node, &mut normal);
                                stack.extend([(split.left, depth + 1), (split.right, depth + 1)]);
                                continue;
                            }
                            Leaf::Entries(entries) => {
                                entries.iter().any(|(e, _)| dead.contains(&e.item()))
                            }
                        };
                        if any_dead {
                            let mut page = store.write(node.block);
                            match leaf::parse(node.block, &page, td)? {
                                Leaf::Split(split_node) => {
                                    let split = read_split_node(split_node, &mut normal);
                                    stack.extend([
                                        (split.left, depth + 1),
                                        (split.right, depth + 1),
                                    ]);
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

    // No leaf points at the dead records now: put them on the free list, a
    // page at a time, each page's records and the list head in one change.
    let mut dead: Vec<ItemLoc> = dead.into_iter().collect();
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
    stats.freed = dead.len() as u64;
    stats.live = MetaHeader::read(&store.read(META_BLOCK)).live_count;
    Ok(stats)
}
