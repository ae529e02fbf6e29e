//! amcheck-style verification of a whole index.

use std::collections::{HashMap, HashSet};

use half::f16;

use crate::format::*;
use crate::items::{read_item, ItemLoc};
use crate::leaf::{self, Leaf};
use crate::meta::{read_basis, Meta, META_BLOCK};
use crate::store::{PageKind, PageStore};
use crate::Corruption;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub items: u64,
    pub live_items: u64,
    pub deleted_items: u64,
    /// Deleted items on the free list (the rest await the next VACUUM).
    pub free_items: u64,
    /// Live items an insert has not (yet, or after a crash: ever) added to
    /// every tree.
    pub incomplete_items: u64,
    /// Pages nothing points at: allocated by a change that a crash cut off
    /// before the page linking to them was logged. Wasted, not wrong.
    pub unused_pages: u32,
    /// Pages given back (by the rebuild or the compaction) for allocations
    /// to reuse.
    pub free_pages: u32,
    pub trees: u32,
    pub item_pages: u32,
    pub split_pages: u32,
    pub leaf_pages: u32,
    /// Pages holding the tree space's basis (their contents checked
    /// against the metapage's checksum).
    pub basis_pages: u32,
    pub leaf_entries: u64,
    /// Longest root-to-leaf path, in nodes.
    pub max_depth: u32,
}

/// Verifies the metapage, the item chain (record layout, stored norms), the
/// free list, that every tree reaches every live item exactly once (an item
/// still being inserted at most once) with a code that matches the item's
/// vector, and no freed item, and that no page is used twice.
pub fn check<S: PageStore>(store: &S) -> Result<CheckReport, Corruption> {
    let meta = Meta::read(store)?;
    let h = meta.header;
    let nblocks = store.nblocks();
    let mut owner: Vec<bool> = vec![false; nblocks as usize];
    owner[META_BLOCK as usize] = true;
    let mut claim = |block: u32, kind: PageKind| -> Result<(), Corruption> {
        if block == META_BLOCK || block >= nblocks {
            return Err(Corruption::new(
                block,
                format!("reference to block {block} of {nblocks}"),
            ));
        }
        if store.kind(block) != Some(kind) {
            return Err(Corruption::new(
                block,
                format!("expected a {kind:?} page, found {:?}", store.kind(block)),
            ));
        }
        if std::mem::replace(&mut owner[block as usize], true) {
            return Err(Corruption::new(block, "page reached twice"));
        }
        Ok(())
    };
    let mut report = CheckReport {
        trees: h.trees,
        ..CheckReport::default()
    };

    read_basis(store, &h)?;
    for block in h.basis_block..h.basis_block + h.basis_pages {
        claim(block, PageKind::Basis)?;
    }
    report.basis_pages = h.basis_pages;

    // Item chain. Live items map to the code their leaf entries must carry.
    let body = store.body_size();
    let td = meta.reduced_dims();
    let mut live: HashMap<ItemLoc, (Vec<u8>, f32, f32)> = HashMap::new();
    // Deleted records not yet freed (leaves may still point at them), and free ones.
    let mut unfreed: HashSet<ItemLoc> = HashSet::new();
    let mut free: HashSet<ItemLoc> = HashSet::new();
    let mut incomplete: HashSet<ItemLoc> = HashSet::new();
    let mut vector = vec![f16::ZERO; DIMS];
    let mut reduced = vec![f16::ZERO; meta.space.reduced_dims];
    let mut block = h.item_head;
    let mut continued = 0usize;
    loop {
        claim(block, PageKind::Item)?;
        report.item_pages += 1;
        let header = ItemPageHeader::read(&store.read(block));
        if header.continued_bytes as usize != continued {
            return Err(Corruption::new(
                block,
                format!(
                    "page continues {} bytes, expected {continued}",
                    header.continued_bytes
                ),
            ));
        }
        let mut offset = ItemPageHeader::SIZE + continued;
        continued = 0;
        for _ in 0..header.records_started {
            if offset + ItemRecordHeader::SIZE > body {
                return Err(Corruption::new(
                    block,
                    "more records started than fit the page",
                ));
            }
            let loc = ItemLoc {
                block,
                offset: offset as u16,
            };
            let record = read_item(store, loc, &mut vector)?;
            if ![0, ITEM_INSERTING, ITEM_DELETED, ITEM_DELETED | ITEM_FREE].contains(&record.flags)
            {
                return Err(Corruption::new(
                    block,
                    format!("item at {offset}: bad flags {:#x}", record.flags),
                ));
            }
            let norm_sq = imgsim_kernels::norm_squared(&vector);
            if !(norm_sq - record.norm_sq)
                .abs()
                .le(&(1e-4 * norm_sq.max(record.norm_sq) + 1e-6))
            {
                return Err(Corruption::new(
                    block,
                    format!("item at {offset}: vector does not match its stored norm"),
                ));
            }
            report.items += 1;
            if record.flags & ITEM_FREE != 0 {
                report.deleted_items += 1;
                free.insert(loc);
            } else if record.flags & ITEM_DELETED != 0 {
                report.deleted_items += 1;
                unfreed.insert(loc);
            } else {
                meta.space
                    .reduce_item(&vector, record.norm_sq, &mut reduced);
                let mut code = vec![0u8; td];
                let (scale, code_norm_sq) = meta.space.item_code(&reduced, &mut code);
                live.insert(loc, (code, scale, code_norm_sq));
                if record.flags & ITEM_INSERTING != 0 {
                    incomplete.insert(loc);
                }
            }
            offset += ITEM_RECORD_BYTES;
            if offset > body {
                continued = offset - body;
                offset = body;
            }
        }
        if header.next == 0 {
            if block != h.item_tail || (continued == 0 && offset != h.item_tail_used as usize) {
                return Err(Corruption::new(
                    block,
                    "item chain ends away from the recorded tail",
                ));
            }
            break;
        }
        if continued == 0 && offset + ItemRecordHeader::SIZE <= body {
            return Err(Corruption::new(
                block,
                "item page left with room for a record but chain continues",
            ));
        }
        block = header.next;
    }
    if continued != 0 {
        return Err(Corruption::new(block, "last item record is cut off"));
    }
    report.live_items = report.items - report.deleted_items;
    if report.items != h.item_count || report.live_items != h.live_count {
        return Err(Corruption::new(
            META_BLOCK,
            format!(
                "metapage counts {} items ({} live), chain holds {} ({} live)",
                h.item_count, h.live_count, report.items, report.live_items
            ),
        ));
    }

    // Free list: exactly the free records, each once.
    let mut listed = 0u64;
    let mut at = (h.free_block, h.free_offset);
    while at.0 != 0 {
        let loc = ItemLoc {
            block: at.0,
            offset: at.1,
        };
        if !free.remove(&loc) {
            return Err(Corruption::new(
                loc.block,
                format!(
                    "free list reaches item offset {}, not a free record (or twice)",
                    loc.offset
                ),
            ));
        }
        listed += 1;
        let page = store.read(loc.block);
        at = ItemRecordHeader::read(&page[loc.offset as usize..]).free_link();
    }
    report.free_items = listed;
    if !free.is_empty() || listed != h.free_count {
        return Err(Corruption::new(
            META_BLOCK,
            format!(
                "free list holds {listed} records, metapage counts {}, {} free records not on it",
                h.free_count,
                free.len()
            ),
        ));
    }

    // Trees.
    let node_bytes = split_node_bytes(td);
    let split_cap = splits_per_page(body, td);
    let mut normal = vec![0f32; td];
    for (t, root) in meta.roots.iter().enumerate() {
        let mut reached: HashSet<ItemLoc> = HashSet::new();
        // Split pages of this tree and how many of their nodes were reached.
        let mut split_pages: HashMap<u32, u16> = HashMap::new();
        let mut visited_splits: HashSet<(u32, u16)> = HashSet::new();
        let mut stack = vec![(*root, 1u32)];
        while let Some((node, depth)) = stack.pop() {
            report.max_depth = report.max_depth.max(depth);
            match node.kind {
                NODE_EMPTY if depth == 1 => {}
                NODE_SPLIT => {
                    if !split_pages.contains_key(&node.block) {
                        claim(node.block, PageKind::Split)?;
                        report.split_pages += 1;
                    }
                    *split_pages.entry(node.block).or_default() += 1;
                    if !visited_splits.insert((node.block, node.slot)) {
                        return Err(Corruption::new(
                            node.block,
                            format!("tree {t}: split node {} reached twice", node.slot),
                        ));
                    }
                    let page = store.read(node.block);
                    let count = SplitPageHeader::read(&page).count;
                    if count as usize > split_cap || node.slot >= count {
                        return Err(Corruption::new(
                            node.block,
                            format!("split slot {} of {count}", node.slot),
                        ));
                    }
                    let at = SplitPageHeader::SIZE + node.slot as usize * node_bytes;
                    let split = read_split_node(&page[at..], &mut normal);
                    check_hyperplane(node.block, &split, &normal)?;
                    stack.push((split.left, depth + 1));
                    stack.push((split.right, depth + 1));
                }
                NODE_LEAF => {
                    claim(node.block, PageKind::Leaf)?;
                    report.leaf_pages += 1;
                    let page = store.read(node.block);
                    let entries = match leaf::parse(node.block, &page, td)? {
                        Leaf::Split(split_node) => {
                            let split = read_split_node(split_node, &mut normal);
                            check_hyperplane(node.block, &split, &normal)?;
                            stack.push((split.left, depth + 1));
                            stack.push((split.right, depth + 1));
                            continue;
                        }
                        Leaf::Entries(entries) => entries,
                    };
                    let version = LeafPageHeader::read(&page).version;
                    if node.slot != version {
                        return Err(Corruption::new(
                            node.block,
                            format!(
                                "leaf reference to version {} of version {version}",
                                node.slot
                            ),
                        ));
                    }
                    for (k, (entry, stored)) in entries.iter().enumerate() {
                        let loc = entry.item();
                        let bad = |d: &str| {
                            Corruption::new(node.block, format!("tree {t}, leaf entry {k}: {d}"))
                        };
                        if unfreed.contains(&loc) {
                            continue; // VACUUM removes it before freeing the record
                        }
                        let (code, scale, code_norm_sq) =
                            live.get(&loc).ok_or_else(|| bad("no live item there"))?;
                        if !reached.insert(loc) {
                            return Err(bad("item reached twice"));
                        }
                        if stored != &code[..]
                            || entry.scale.to_bits() != scale.to_bits()
                            || entry.code_norm_sq.to_bits() != code_norm_sq.to_bits()
                        {
                            return Err(bad("code does not match the item's vector"));
                        }
                        report.leaf_entries += 1;
                    }
                }
                kind => {
                    return Err(Corruption::new(
                        node.block,
                        format!("tree {t}: bad node kind {kind}"),
                    ))
                }
            }
        }
        for (&block, &reached_nodes) in &split_pages {
            let count = SplitPageHeader::read(&store.read(block)).count;
            if count != reached_nodes {
                return Err(Corruption::new(
                    block,
                    format!("tree {t} reaches {reached_nodes} of the page's {count} split nodes"),
                ));
            }
        }
        let reached_complete = reached.len() - reached.intersection(&incomplete).count();
        if reached_complete != live.len() - incomplete.len() {
            return Err(Corruption::new(
                META_BLOCK,
                format!(
                    "tree {t} reaches {reached_complete} of {} live items",
                    live.len() - incomplete.len()
                ),
            ));
        }
    }
    report.incomplete_items = incomplete.len() as u64;
    for (block, _) in owner.iter().enumerate().filter(|(_, used)| !**used) {
        if store.kind(block as u32) == Some(PageKind::Free) {
            report.free_pages += 1;
        } else {
            report.unused_pages += 1;
        }
    }
    Ok(report)
}

fn check_hyperplane(block: u32, split: &SplitNodeHeader, normal: &[f32]) -> Result<(), Corruption> {
    let len_sq: f32 = normal.iter().map(|x| x * x).sum();
    let unit = (len_sq - 1.0).abs() < 1e-3;
    if !split.offset.is_finite() || !unit {
        return Err(Corruption::new(block, "split node: bad hyperplane"));
    }
    Ok(())
}
