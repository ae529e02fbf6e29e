//! Compaction at the end of VACUUM: an index whose rows were updated or
//! deleted gives back the space their old versions took.
//!
//! Why: an `UPDATE` inserts every new version before VACUUM frees the old
//! one, so the item chain holds two records per row at the peak; VACUUM
//! puts the old ones on the free list, but the slots stay in the relation,
//! and the leaves it empties stay half full. Rounds of updating every row
//! and vacuuming kept an index at 2.06× a fresh build's size.
//!
//! The caller holds the index exclusively (no scan, insert or VACUUM
//! running, none able to start), so no one can hold the location of a
//! record or page this moves or frees. A compaction sets the metapage's
//! `compacting` flag (cleared at the end: one cut off is due again, to give
//! back the pages it left unreachable), then:
//! 1. drains the free list: each free slot below the *cut* (the chain
//!    position past which no record is kept) gets a copy of a live record
//!    from beyond the cut, flagged [`ITEM_INSERTING`] (live, in no tree
//!    yet, counted in the metapage's `copies_pending`); each free slot
//!    beyond the cut is flagged deleted;
//! 2. builds new trees over the records below the cut, in the tree space
//!    the index has (no new basis: the space was learned from enough rows
//!    by the build or the one rebuild, and keeping it keeps its pages and
//!    the codes the old leaves hold, which the new trees reuse);
//! 3. points the metapage at the new trees and ends the item chain at the
//!    cut (the metapage and the new tail page in one change);
//! 4. clears the copies' flag, frees every page nothing points at now (the
//!    old trees, the chain's cut-off pages, pages a crash left unreachable);
//! 5. copies the basis and tree pages past the size the index now needs
//!    into the lowest free pages (references rewritten, the metapage then
//!    pointed at the copies) and frees the originals;
//! 6. truncates the free pages at the end of the relation.
//!
//! Until step 3 it gives up when the caller's `keep_going` says so. Every
//! step is one or more changes that each leave a valid index: before
//! step 3 the old trees reach every live row (a copy is a duplicate that no
//! tree reaches, and a later compaction tells it from its original by its
//! flag and place, and overwrites it); after it the new trees do, and what
//! is left undone is unreachable pages (wasted until the next compaction
//! frees them) or flags of copies (an `ITEM_INSERTING` record in every tree
//! is valid).

use std::collections::{BTreeSet, HashMap, HashSet};

use half::f16;

use crate::build::{build_trees, code_items, BuildPhase, BuildStats, CodedItems, ForestPlan};
use crate::format::*;
use crate::insert::{check_kind, read_split};
use crate::items::{read_item, refill, rewrite, ItemLoc};
use crate::leaf::{self, Leaf};
use crate::meta::{Meta, META_BLOCK};
use crate::rebuild::walk_tree_pages;
use crate::store::{PageKind, PageStore};
use crate::vacuum::free_records;
use crate::Corruption;

/// A compaction is due once the index is this many times the size a fresh
/// build of its live items would have ([`fresh_pages`]). Compacting right
/// after a VACUUM brings it back to about 1×, so between compactions it
/// stays below this (plus what the estimate misses) whatever the update
/// pattern; and each compaction gives back at least a sixth of the index,
/// so its cost (a rebuild of the trees) is paid only for real waste.
pub const COMPACT_AT: f64 = 1.2;

/// Waste below this many pages is left alone (small indexes).
const COMPACT_MIN_WASTE: u64 = 16;

/// Entries per leaf of a fresh build, as a share of `leaf_size`:
/// two-means splits stop at or below `leaf_size`, so leaves average about
/// 70 % full (measured: 20.8 of 29 on 30 000 clustered rows).
const FRESH_LEAF_FILL: f64 = 0.7;

/// Pages a fresh build of the index's live items would take: the metapage,
/// the item records packed back to back, the basis, and per tree its leaves
/// ([`FRESH_LEAF_FILL`] full) and split nodes packed into split pages.
pub fn fresh_pages(h: &MetaHeader, body_size: usize) -> u64 {
    let live = h.live_count.saturating_sub(u64::from(h.copies_pending));
    let item_pages = (live * ITEM_RECORD_BYTES as u64)
        .div_ceil((body_size - ItemPageHeader::SIZE) as u64)
        .max(1);
    let leaves = (live as f64 / (f64::from(h.leaf_size) * FRESH_LEAF_FILL))
        .ceil()
        .max(1.0) as u64;
    let per_page = splits_per_page(body_size, h.reduced_dims as usize).max(1) as u64;
    let split_pages = (leaves - 1).div_ceil(per_page);
    1 + item_pages + u64::from(h.basis_pages) + u64::from(h.trees) * (leaves + split_pages)
}

/// Whether an index of `nblocks` pages with this metapage wants a
/// compaction: VACUUM has freed records, or a compaction was cut off
/// (without either there is nothing to give back that a rebuild would not
/// also need, whatever the estimate says), and the index is past
/// [`COMPACT_AT`] times a fresh build's size.
pub fn compaction_due(h: &MetaHeader, nblocks: u32, body_size: usize) -> bool {
    let fresh = fresh_pages(h, body_size);
    let nblocks = u64::from(nblocks);
    (h.free_count > 0 || h.compacting != 0)
        && nblocks as f64 > COMPACT_AT * fresh as f64
        && nblocks >= fresh + COMPACT_MIN_WASTE
}

/// [`compaction_due`] for the index in `store` (reads the metapage).
pub fn wants_compaction<S: PageStore>(store: &S) -> Result<bool, Corruption> {
    let h = Meta::read(store)?.header;
    Ok(compaction_due(&h, store.nblocks(), store.body_size()))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Live items in the new trees.
    pub items: u64,
    /// Records copied from beyond the cut into free slots before it.
    pub moved: u64,
    /// Tree pages copied down to lower free pages.
    pub relocated_pages: u32,
    pub pages_before: u32,
    pub pages_after: u32,
    /// `false`: given up before the switch because `keep_going` said so
    /// (the index valid, the work left for the next compaction).
    pub finished: bool,
}

/// What the chain walk makes of a record slot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Live, and in the trees (or the one record of its heap TID).
    Keep,
    /// On the free list.
    Free,
    /// Deleted, not on the free list (a VACUUM cut off before freeing it).
    Dead,
    /// A copy a compaction cut off before its switch left behind: flagged
    /// [`ITEM_INSERTING`], in no tree, its original later in the chain.
    Stale,
}

struct Slot {
    loc: ItemLoc,
    /// Index of its page in [`Chain::pages`].
    page: usize,
    flags: u16,
    class: Class,
}

/// The item chain as the walk found it: pages and record slots in chain order.
struct Chain {
    pages: Vec<u32>,
    slots: Vec<Slot>,
}

impl Chain {
    fn read<S: PageStore>(store: &S, h: &MetaHeader) -> Result<Self, Corruption> {
        let body = store.body_size();
        let mut chain = Chain {
            pages: Vec::new(),
            slots: Vec::new(),
        };
        let mut seen = HashSet::new();
        // The last slot seen of each heap TID.
        let mut last: HashMap<[u8; 6], usize> = HashMap::new();
        let mut block = h.item_head;
        while block != 0 {
            check_kind(store, block, PageKind::Item)?;
            if !seen.insert(block) {
                return Err(Corruption::new(block, "item chain loops"));
            }
            let page = store.read(block);
            let header = ItemPageHeader::read(&page);
            let first = ItemPageHeader::SIZE + header.continued_bytes as usize;
            for k in 0..header.records_started as usize {
                let offset = first + k * ITEM_RECORD_BYTES;
                if offset + ItemRecordHeader::SIZE > body {
                    return Err(Corruption::new(
                        block,
                        "more records started than fit the page",
                    ));
                }
                let record = ItemRecordHeader::read(&page[offset..]);
                let i = chain.slots.len();
                let class = if record.flags & ITEM_DELETED == 0 {
                    // Copies go before the cut, their originals beyond it,
                    // and an original goes only when the chain is cut: of
                    // two live records of a TID, an earlier copy is stale.
                    if let Some(j) = last.insert(record.tid, i) {
                        if chain.slots[j].flags & ITEM_INSERTING != 0 {
                            chain.slots[j].class = Class::Stale;
                        }
                    }
                    Class::Keep
                } else if record.flags & ITEM_FREE != 0 {
                    Class::Free
                } else {
                    Class::Dead
                };
                chain.slots.push(Slot {
                    loc: ItemLoc {
                        block,
                        offset: offset as u16,
                    },
                    page: chain.pages.len(),
                    flags: record.flags,
                    class,
                });
            }
            chain.pages.push(block);
            block = header.next;
        }
        if chain.pages.is_empty() {
            return Err(Corruption::new(META_BLOCK, "the item chain has no page"));
        }
        Ok(chain)
    }

    /// The cut: the fewest leading slots whose kept, free and stale slots
    /// together number the kept records, so each kept record beyond it has
    /// a slot before it to move to.
    fn cut(&self) -> usize {
        let keep = self.slots.iter().filter(|s| s.class == Class::Keep).count();
        let mut usable = 0;
        let mut cut = 0;
        while usable < keep {
            if self.slots[cut].class != Class::Dead {
                usable += 1;
            }
            cut += 1;
        }
        cut
    }

    /// The chain ended after `cut` slots: its last page (index into
    /// `pages`), the bytes used in it and the records that start there.
    fn tail(&self, cut: usize, body: usize) -> Result<(usize, u32, u16), Corruption> {
        let Some(last) = cut.checked_sub(1).map(|i| &self.slots[i]) else {
            return Ok((0, ItemPageHeader::SIZE as u32, 0));
        };
        let end = last.loc.offset as usize + ITEM_RECORD_BYTES;
        if end <= body {
            let started = self.slots[..cut]
                .iter()
                .filter(|s| s.page == last.page)
                .count();
            return Ok((last.page, end as u32, started as u16));
        }
        if last.page + 1 == self.pages.len() {
            return Err(Corruption::new(
                last.loc.block,
                "last item record is cut off",
            ));
        }
        let used = ItemPageHeader::SIZE + end - body;
        Ok((last.page + 1, used as u32, 0))
    }
}

/// The codes of the items at `locs` for the new trees. The tree space is
/// kept, so the old trees' leaves hold them (tree 0's, read once, under the
/// item's location before the move: `origins`); the few they lack (items an
/// insert cut off by a crash did not add to tree 0) are coded from their
/// vectors. Saves reading and projecting every vector (a third of a
/// compaction's time).
fn codes_of<S: PageStore>(
    store: &S,
    meta: &Meta,
    locs: &[ItemLoc],
    origins: &[ItemLoc],
    plan: &ForestPlan,
    progress: &mut dyn FnMut(BuildPhase, u64, u64),
) -> Result<CodedItems, Corruption> {
    let d = meta.reduced_dims();
    let stride = code_stride(d);
    let n = locs.len();
    let mut coded = CodedItems {
        stride,
        codes: vec![0u8; n * stride],
        scales: vec![0.0; n],
        code_norms_sq: vec![0.0; n],
    };
    let mut wanted: HashMap<ItemLoc, usize> =
        origins.iter().enumerate().map(|(i, &o)| (o, i)).collect();
    let mut normal = vec![0f32; d];
    let mut stack = vec![(meta.roots[0], 0u16)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_TREE_DEPTH {
            return Err(Corruption::new(
                node.block,
                "tree path too deep: pages form a cycle",
            ));
        }
        let split = match node.kind {
            NODE_EMPTY => continue,
            NODE_SPLIT => read_split(store, node, &mut normal)?,
            NODE_LEAF => {
                check_kind(store, node.block, PageKind::Leaf)?;
                let page = store.read(node.block);
                match leaf::parse(node.block, &page, d)? {
                    Leaf::Split(split_node) => read_split_node(split_node, &mut normal),
                    Leaf::Entries(entries) => {
                        for (entry, code) in entries.iter() {
                            if let Some(i) = wanted.remove(&entry.item()) {
                                coded.codes[i * stride..i * stride + d].copy_from_slice(code);
                                coded.scales[i] = entry.scale;
                                coded.code_norms_sq[i] = entry.code_norm_sq;
                            }
                        }
                        continue;
                    }
                }
            }
            kind => return Err(Corruption::new(node.block, format!("bad node kind {kind}"))),
        };
        stack.push((split.left, depth + 1));
        stack.push((split.right, depth + 1));
    }
    let (missing, missing_locs): (Vec<usize>, Vec<ItemLoc>) =
        wanted.into_values().map(|i| (i, locs[i])).unzip();
    let more = code_items(
        store,
        &meta.space,
        &missing_locs,
        plan.threads,
        plan.thread_init,
        progress,
    );
    for (k, &i) in missing.iter().enumerate() {
        coded.codes[i * stride..(i + 1) * stride].copy_from_slice(more.code(k as u32));
        coded.scales[i] = more.scales[k];
        coded.code_norms_sq[i] = more.code_norms_sq[k];
    }
    progress(BuildPhase::Coding, n as u64, n as u64);
    Ok(coded)
}

/// Sets the metapage's `compacting` flag.
fn set_compacting<S: PageStore>(store: &S, compacting: u16) {
    let mut meta_page = store.write(META_BLOCK);
    let mut h = MetaHeader::read(&meta_page);
    h.compacting = compacting;
    h.write(&mut meta_page);
}

/// The record at `source`, its vector read into `vector`, as the header of
/// a copy. Read with no page held: the source may share the copy's page.
fn copy_of<S: PageStore>(
    store: &S,
    source: ItemLoc,
    vector: &mut [f16],
) -> Result<ItemRecordHeader, Corruption> {
    let record = read_item(store, source, vector)?;
    Ok(ItemRecordHeader {
        flags: ITEM_INSERTING,
        ..record
    })
}

/// Compacts the index if [`compaction_due`] (else returns `None`); see the
/// module docs. The caller holds the index exclusively. Until the switch
/// it asks `keep_going` now and then, and gives up when it says no (the
/// caller's lock holds up another session).
pub fn compact<S: PageStore>(
    store: &S,
    threads: usize,
    thread_init: fn(),
    progress: &mut dyn FnMut(BuildPhase, u64, u64),
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Option<CompactStats>, Corruption> {
    let meta = Meta::read(store)?;
    let pages_before = store.nblocks();
    if !compaction_due(&meta.header, pages_before, store.body_size()) {
        return Ok(None);
    }
    let given_up = |moved| {
        Ok(Some(CompactStats {
            moved,
            pages_before,
            pages_after: store.nblocks(),
            ..CompactStats::default()
        }))
    };
    let body = store.body_size();
    let mut chain = Chain::read(store, &meta.header)?;
    let cut = chain.cut();
    if !keep_going() {
        return given_up(0);
    }
    set_compacting(store, 1);

    // 1. Drain the free list, from its head.
    let index_of: HashMap<ItemLoc, usize> = chain
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| (s.loc, i))
        .collect();
    let sources: Vec<ItemLoc> = chain.slots[cut..]
        .iter()
        .filter(|s| s.class == Class::Keep)
        .map(|s| s.loc)
        .collect();
    let mut sources = sources.into_iter();
    let mut vector = vec![f16::ZERO; DIMS];
    let mut moved = 0u64;
    // Where each copy came from: its source's leaf entries hold its code.
    let mut copied_from: HashMap<ItemLoc, ItemLoc> = HashMap::new();
    // Stale copies before the cut are overwritten (they are in no tree),
    // those beyond it go with the cut.
    for slot in chain.slots[..cut]
        .iter_mut()
        .filter(|s| s.class == Class::Stale)
    {
        let source = sources
            .next()
            .expect("a source for every slot before the cut");
        let copy = copy_of(store, source, &mut vector)?;
        rewrite(store, slot.loc, copy, &vector, |old| {
            (old.flags == ITEM_INSERTING)
                .then_some(())
                .ok_or_else(|| Corruption::new(slot.loc.block, "a stale copy changed"))
        })?;
        slot.class = Class::Keep;
        slot.flags = ITEM_INSERTING;
        copied_from.insert(slot.loc, source);
        moved += 1;
    }
    let mut drained = 0u64;
    loop {
        let h = MetaHeader::read(&store.read(META_BLOCK));
        if h.free_block == 0 {
            break;
        }
        let loc = ItemLoc {
            block: h.free_block,
            offset: h.free_offset,
        };
        let &i = index_of
            .get(&loc)
            .ok_or_else(|| Corruption::new(loc.block, "free list leaves the item chain"))?;
        if i < cut {
            let source = sources.next().ok_or_else(|| {
                Corruption::new(META_BLOCK, "free list holds more slots than the chain")
            })?;
            let copy = copy_of(store, source, &mut vector)?;
            let mut meta_page = store.write(META_BLOCK);
            let mut h = MetaHeader::read(&meta_page);
            (h.free_block, h.free_offset) = refill(store, loc, copy, &vector)?;
            h.free_count -= 1;
            h.live_count += 1;
            h.copies_pending += 1;
            h.write(&mut meta_page);
            chain.slots[i].class = Class::Keep;
            chain.slots[i].flags = ITEM_INSERTING;
            copied_from.insert(loc, source);
            moved += 1;
        } else {
            let mut meta_page = store.write(META_BLOCK);
            let mut h = MetaHeader::read(&meta_page);
            let mut page = store.write(loc.block);
            let at = loc.offset as usize;
            let record = ItemRecordHeader::read(&page[at..]);
            if record.flags != ITEM_DELETED | ITEM_FREE {
                return Err(Corruption::new(
                    loc.block,
                    format!("free list points at item offset {at}, which is not free"),
                ));
            }
            (h.free_block, h.free_offset) = record.free_link();
            ItemRecordHeader {
                flags: ITEM_DELETED,
                ..record
            }
            .write(&mut page[at..]);
            h.free_count -= 1;
            h.write(&mut meta_page);
        }
        drained += 1;
        if drained.is_multiple_of(64) {
            progress(BuildPhase::LoadingItems, drained, meta.header.free_count);
            if !keep_going() {
                return given_up(moved);
            }
        }
    }
    if sources.next().is_some() {
        return Err(Corruption::new(
            META_BLOCK,
            "free records missing from the free list",
        ));
    }

    // 2. New trees over the records before the cut.
    let locs: Vec<ItemLoc> = chain.slots[..cut]
        .iter()
        .filter(|s| s.class == Class::Keep)
        .map(|s| s.loc)
        .collect();
    let plan = ForestPlan::for_index(&meta, threads, thread_init);
    let mut built = BuildStats::of_items(locs.len() as u64);
    let origins: Vec<ItemLoc> = locs
        .iter()
        .map(|loc| copied_from.get(loc).copied().unwrap_or(*loc))
        .collect();
    let coded = codes_of(store, &meta, &locs, &origins, &plan, progress)?;
    let roots = build_trees(store, &plan, &coded, &locs, &mut built, progress);
    if !keep_going() {
        return given_up(moved);
    }

    // 3. The switch: new trees, the chain ended at the cut.
    let (tail, tail_used, tail_records) = chain.tail(cut, body)?;
    {
        let mut meta_page = store.write(META_BLOCK);
        let mut tail_page = store.write(chain.pages[tail]);
        ItemPageHeader {
            next: 0,
            records_started: tail_records,
            ..ItemPageHeader::read(&tail_page)
        }
        .write(&mut tail_page);
        let current = MetaHeader::read(&meta_page);
        let new_meta = Meta {
            header: MetaHeader {
                item_count: cut as u64,
                live_count: locs.len() as u64,
                item_tail: chain.pages[tail],
                item_tail_used: tail_used,
                copies_pending: 0,
                ..current
            },
            roots,
            space: meta.space.clone(),
        };
        new_meta.write_to(&mut meta_page);
    }

    // 4. Every record before the cut is in every tree now.
    let kept = &chain.slots[..cut];
    let flagged = kept
        .iter()
        .filter(|s| s.class == Class::Keep && s.flags & ITEM_INSERTING != 0);
    let flagged: Vec<ItemLoc> = flagged.map(|s| s.loc).collect();
    for page_records in flagged.chunk_by(|a, b| a.block == b.block) {
        let mut page = store.write(page_records[0].block);
        for loc in page_records {
            let at = loc.offset as usize;
            let mut record = ItemRecordHeader::read(&page[at..]);
            record.flags &= !ITEM_INSERTING;
            record.write(&mut page[at..]);
        }
    }
    let mut dead: Vec<ItemLoc> = kept
        .iter()
        .filter(|s| s.class == Class::Dead)
        .map(|s| s.loc)
        .collect();
    free_records(store, &mut dead);

    let meta = Meta::read(store)?;
    let mut in_use: BTreeSet<u32> = BTreeSet::from([META_BLOCK]);
    in_use.extend(&chain.pages[..=tail]);
    let basis = meta.header.basis_block..meta.header.basis_block + meta.header.basis_pages;
    in_use.extend(basis);
    let mut parents: HashMap<u32, HashSet<u32>> = HashMap::new();
    walk_tree_pages(store, &meta, |page, parent| {
        let parents = parents.entry(page).or_default();
        parents.extend(parent.filter(|&p| p != page));
    })?;
    in_use.extend(parents.keys());
    for block in 1..store.nblocks() {
        if !in_use.contains(&block) && store.kind(block) != Some(PageKind::Free) {
            store.free(block);
        }
    }

    // 5. Tree pages past what the index needs, and the pages pointing at
    // them, copied down.
    let relocated = relocate(store, &meta, &mut in_use, &parents)?;

    // 6. Every page past the last one in use is free.
    let end = in_use.last().map_or(1, |&b| b + 1);
    if end < store.nblocks() {
        store.truncate(end);
    }
    set_compacting(store, 0);
    Ok(Some(CompactStats {
        items: locs.len() as u64,
        moved,
        relocated_pages: relocated,
        pages_before,
        pages_after: store.nblocks(),
        finished: true,
    }))
}

/// Step 5 of [`compact`]: copies the basis, if it ends past the number of
/// pages in use, into the lowest run of free pages before it, and the tree
/// pages at or past that number, with every page that points at them up to
/// the roots, into the lowest other free pages; then points the metapage at
/// the copies and frees the originals. `in_use` is updated; returns the
/// pages copied.
fn relocate<S: PageStore>(
    store: &S,
    meta: &Meta,
    in_use: &mut BTreeSet<u32>,
    parents: &HashMap<u32, HashSet<u32>>,
) -> Result<u32, Corruption> {
    let needed = in_use.len() as u32;
    let h = &meta.header;
    let is_free = |b: &u32| !in_use.contains(b);
    // The basis is one run of pages (the metapage names its first).
    let basis_to = (h.basis_block + h.basis_pages > needed)
        .then(|| {
            let run = h.basis_pages;
            (1..h.basis_block.saturating_sub(run))
                .find(|&start| (start..start + run).all(|b| is_free(&b)))
        })
        .flatten();
    let reserved = basis_to.map_or(0..0, |start| start..start + h.basis_pages);

    let mut moving: HashSet<u32> = parents.keys().copied().filter(|&b| b >= needed).collect();
    let mut pending: Vec<u32> = moving.iter().copied().collect();
    while let Some(page) = pending.pop() {
        for &parent in &parents[&page] {
            if moving.insert(parent) {
                pending.push(parent);
            }
        }
    }
    let free: Vec<u32> = (1..store.nblocks())
        .filter(|b| is_free(b) && !reserved.contains(b))
        .take(moving.len())
        .collect();
    let mut moving: Vec<u32> = moving.into_iter().collect();
    moving.sort_unstable();
    // Only worth it if the copies end lower than the originals.
    if free.len() < moving.len() || free.last() >= moving.last() {
        moving.clear();
    }
    if moving.is_empty() && basis_to.is_none() {
        return Ok(0);
    }

    let to: HashMap<u32, u32> = moving.iter().copied().zip(free.iter().copied()).collect();
    let remap = |r: &mut NodeRef| {
        if r.kind != NODE_EMPTY {
            if let Some(&b) = to.get(&r.block) {
                r.block = b;
            }
        }
    };
    let td = meta.reduced_dims();
    let node_bytes = split_node_bytes(td);
    for &old in &moving {
        let kind = store.kind(old).expect("a tree page the walk read");
        let mut body = store.read(old).to_vec();
        if kind == PageKind::Split {
            let header = SplitPageHeader::read(&body);
            for slot in 0..header.count as usize {
                let at = SplitPageHeader::SIZE + slot * node_bytes;
                let mut node = SplitNodeHeader::read(&body[at..]);
                remap(&mut node.left);
                remap(&mut node.right);
                node.write(&mut body[at..]);
            }
            // The overflow page is a hint for inserts (a stale one is
            // refused by its kind): keep it pointing where it moved.
            let overflow = to.get(&header.overflow).copied();
            SplitPageHeader {
                overflow: overflow.unwrap_or(header.overflow),
                ..header
            }
            .write(&mut body);
        } else if let Leaf::Split(_) = leaf::parse(old, &body, td)? {
            let at = LeafPageHeader::SIZE;
            let mut node = SplitNodeHeader::read(&body[at..]);
            remap(&mut node.left);
            remap(&mut node.right);
            node.write(&mut body[at..]);
        }
        store.allocate_at(to[&old], kind).copy_from_slice(&body);
    }
    let old_basis = h.basis_block..h.basis_block + h.basis_pages;
    for (old, new) in old_basis.clone().zip(reserved.clone()) {
        let body = store.read(old).to_vec();
        store
            .allocate_at(new, PageKind::Basis)
            .copy_from_slice(&body);
    }
    {
        let mut meta_page = store.write(META_BLOCK);
        let mut current = Meta::parse(store, &meta_page)?;
        current.roots.iter_mut().for_each(remap);
        current.header.basis_block = basis_to.unwrap_or(current.header.basis_block);
        current.write_to(&mut meta_page);
    }
    let mut freed: Vec<u32> = moving;
    if basis_to.is_some() {
        freed.extend(old_basis);
    }
    for &old in &freed {
        store.free(old);
        in_use.remove(&old);
    }
    in_use.extend(free.iter().take(to.len()));
    in_use.extend(reserved);
    Ok(freed.len() as u32)
}
