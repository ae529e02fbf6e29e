//! The one rebuild of an index built on too few items: a new tree space
//! learned from the items stored since, new trees over them, and the old
//! trees' pages given back.
//!
//! Why: an index created on an empty table (the usual migration order:
//! `CREATE TABLE`, `CREATE INDEX`, then load) has a random tree space and
//! trees grown only by leaf splits, and stays far below a fresh build's
//! recall (hard 100k set, 1 000 queries: recall@10 0.841 against 0.951 at
//! search_k 2000). Trees grown by inserts from a forest built on 20 000
//! items recall like a fresh build's (0.949; from 10 000 items 0.940), so
//! one rebuild at that size suffices, and it takes seconds.
//!
//! The caller must hold the index exclusively (no scan, insert or VACUUM
//! running, none able to start): the old pages are freed, and may be reused
//! by the next allocation, as soon as the metapage points at the new trees.

use half::f16;

use crate::build::{build_forest, BuildPhase, BuildStats, ForestPlan, Sample};
use crate::format::*;
use crate::items::{for_each_record_from, read_item, ItemLoc};
use crate::leaf::{self, Leaf};
use crate::meta::{Meta, META_BLOCK};
use crate::store::{PageKind, PageStore};
use crate::Corruption;

/// The default of [`Options::rebuild_rows`].
pub const REBUILD_ROWS: u32 = 20_000;

/// A rebuild is attempted while the index holds at most this many times
/// its `rebuild_at` items: the caller locks the index exclusively for the
/// rebuild's duration, which grows with the items (1–2 s per 10 000 at
/// 16 trees), so an index that never got the chance (always in use
/// when it grew) is left as it is rather than locked for long.
pub const REBUILD_MAX_GROWTH: u64 = 2;

/// Whether the index with this metapage wants its rebuild now.
pub fn rebuild_due(h: &MetaHeader) -> bool {
    let at = u64::from(h.rebuild_at);
    at != 0 && h.live_count >= at && h.live_count <= at * REBUILD_MAX_GROWTH
}

/// [`rebuild_due`] for the index in `store` (reads the metapage).
pub fn wants_rebuild<S: PageStore>(store: &S) -> Result<bool, Corruption> {
    Ok(rebuild_due(&Meta::read(store)?.header))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildStats {
    /// Items in the new trees.
    pub items: u64,
    pub leaf_pages: u32,
    pub split_pages: u32,
    /// Pages of the old trees and basis given back.
    pub freed_pages: u32,
}

/// Rebuilds the forest if [`rebuild_due`] (else returns `None`): learns the
/// tree space from a sample of the live items, builds the trees over every
/// item not deleted, points the metapage at them, then frees the old tree
/// and basis pages. The caller holds the index exclusively (module docs).
///
/// Crash safety: the new pages are written before the metapage, so a crash
/// before it leaves the old forest intact (the new pages unreachable:
/// wasted, as `check` reports); the old pages are freed after it.
pub fn rebuild<S: PageStore>(
    store: &S,
    threads: usize,
    thread_init: fn(),
    progress: &mut dyn FnMut(BuildPhase, u64, u64),
) -> Result<Option<RebuildStats>, Corruption> {
    let meta = Meta::read(store)?;
    let h = meta.header;
    if !rebuild_due(&h) {
        return Ok(None);
    }
    let td = meta.reduced_dims();
    let old_pages = forest_pages(store, &meta)?;

    // Every record not deleted: live ones, and ones an insert cut off by a
    // crash left flagged (VACUUM removes those with their dead rows, from
    // the new trees as from the old).
    let mut sample = Sample::new(h.seed);
    let mut locs = Vec::new();
    let mut vector = vec![f16::ZERO; DIMS];
    let mut failed = None;
    let head = ItemLoc {
        block: h.item_head,
        offset: 0,
    };
    for_each_record_from(store, head, |loc| {
        if failed.is_some() {
            return;
        }
        match read_item(store, loc, &mut vector) {
            Ok(record) if record.flags & ITEM_DELETED == 0 => {
                sample.offer(&vector, record.norm_sq, meta.space.metric);
                locs.push(loc);
            }
            Ok(_) => {}
            Err(corruption) => failed = Some(corruption),
        }
    });
    if let Some(corruption) = failed {
        return Err(corruption);
    }
    progress(
        BuildPhase::LoadingItems,
        locs.len() as u64,
        locs.len() as u64,
    );

    let plan = ForestPlan::for_index(&meta, threads, thread_init);
    let mut built = BuildStats::of_items(locs.len() as u64);
    let forest = build_forest(store, &plan, sample.rows, &locs, &mut built, progress);
    debug_assert_eq!(forest.space.reduced_dims, td);

    let new_meta = Meta {
        header: MetaHeader {
            basis_block: forest.basis_block,
            basis_checksum: forest.basis_checksum,
            rebuild_at: 0,
            ..h
        },
        roots: forest.roots,
        space: forest.space,
    };
    new_meta.write_to(&mut store.write(META_BLOCK));
    for &block in &old_pages {
        store.free(block);
    }
    Ok(Some(RebuildStats {
        items: locs.len() as u64,
        leaf_pages: built.leaf_pages,
        split_pages: built.split_pages,
        freed_pages: old_pages.len() as u32,
    }))
}

/// Every page of the current forest: its basis pages and each tree's split
/// and leaf pages (leaves split by inserts included), each once.
fn forest_pages<S: PageStore>(store: &S, meta: &Meta) -> Result<Vec<u32>, Corruption> {
    let h = &meta.header;
    let mut pages: Vec<u32> = (h.basis_block..h.basis_block + h.basis_pages).collect();
    let mut seen = std::collections::HashSet::new();
    walk_tree_pages(store, meta, |page, _| {
        if seen.insert(page) {
            pages.push(page);
        }
    })?;
    Ok(pages)
}

/// Calls `visit(page, parent)` for every node of every tree: the page that
/// holds it (a split page once per node on it) and the page holding the
/// reference to it (`None` for a root, which the metapage holds).
pub(crate) fn walk_tree_pages<S: PageStore>(
    store: &S,
    meta: &Meta,
    mut visit: impl FnMut(u32, Option<u32>),
) -> Result<(), Corruption> {
    let td = meta.reduced_dims();
    let mut normal = vec![0f32; td];
    for root in &meta.roots {
        let mut stack = vec![(*root, 0u16, None)];
        while let Some((node, depth, parent)) = stack.pop() {
            if depth > MAX_TREE_DEPTH {
                return Err(Corruption::new(
                    node.block,
                    "tree path too deep: pages form a cycle",
                ));
            }
            match node.kind {
                NODE_EMPTY => {}
                NODE_SPLIT => {
                    let split = crate::insert::read_split(store, node, &mut normal)?;
                    visit(node.block, parent);
                    stack.push((split.left, depth + 1, Some(node.block)));
                    stack.push((split.right, depth + 1, Some(node.block)));
                }
                NODE_LEAF => {
                    crate::insert::check_kind(store, node.block, PageKind::Leaf)?;
                    visit(node.block, parent);
                    let page = store.read(node.block);
                    if let Leaf::Split(split_node) = leaf::parse(node.block, &page, td)? {
                        let split = read_split_node(split_node, &mut normal);
                        stack.push((split.left, depth + 1, Some(node.block)));
                        stack.push((split.right, depth + 1, Some(node.block)));
                    }
                }
                kind => return Err(Corruption::new(node.block, format!("bad node kind {kind}"))),
            }
        }
    }
    Ok(())
}
