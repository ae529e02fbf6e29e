//! k-NN search: one priority queue over all trees (Annoy), candidates scored
//! by their leaf codes, the best re-ranked with the exact vectors.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use half::f16;

use crate::format::*;
use crate::items::{read_item, ItemLoc};
use crate::leaf::{self, Leaf};
use crate::meta::Meta;
use crate::space::{code_distance, dot_f32, QueryCode};
use crate::store::{PageKind, PageStore};
use crate::{Corruption, Metric, Tid};

/// Query-time knobs (GUCs in the glue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchParams {
    /// Distinct candidates scored by code before the first results; each
    /// later widening scores this many more.
    pub search_k: usize,
    /// Candidates (best by code) re-ranked with exact distances in the
    /// first batch; 0 = the metric's [`default_rerank`].
    pub rerank: usize,
}

/// Default `search_k`: recall@10 ≥ 0.97 for every metric at 100k items (README).
pub const DEFAULT_SEARCH_K: usize = 1500;
/// The first batch re-ranked when [`SearchParams::rerank`] is 0 (the
/// default). Past the first batch the stopping rule re-ranks in steps while
/// a candidate's code estimate could still beat a row, so the batch only has
/// to catch the candidates whose estimate is off by more than that rule
/// allows. For L2 and cosine 50 does (BENCHMARKS.md): the recall of 100
/// within 0.001 on the hard 100k set (where even 30 does) and on a
/// clustered 30k set (where 40 loses up to 0.004), and rows in exact order
/// on clusters of isotropic noise (tests/pg_regress: 40 put 2 of 30
/// queries' first 25 rows out of order), for about 75 % (L2) and half
/// (cosine) of the item pages 100 reads. Inner product's estimate lacks the items' norms, and 40 loses
/// 0.02 of recall there, so it keeps 100.
pub fn default_rerank(metric: Metric) -> usize {
    match metric {
        Metric::L2 | Metric::Cosine => 50,
        Metric::InnerProduct => 100,
    }
}

/// Candidates scored by code per row returned past the first ten, on top
/// of `search_k`: a scan that has to go deep (a selective filter) needs a
/// candidate pool that covers the r nearest items, not only the first ten.
/// Scoring is cheap (a leaf code) and only the best are re-ranked, so the
/// pool grows generously: 200 a row keeps recall@10 of a 10 % filter above
/// 0.95 on the hard 100k set, where 16 gave 0.84 (BENCHMARKS.md).
pub const CANDIDATES_PER_ROW: usize = 200;
/// Candidates re-ranked at a time after the first batch.
const RERANK_STEP: usize = 16;
/// How far (relatively) below its code estimate an item's exact distance
/// may lie: a row is returned once every candidate not yet re-ranked is
/// estimated at least this much farther. L2's estimate is the tree-space
/// distance, which leaves out the part of the distance outside the tree
/// space and so mostly errs low: 0.08 reads 18 % fewer item pages than 0.1
/// on the hard 100k set (116 → 95 a query), and half of them in a 10 %
/// filtered scan, with the same recall (BENCHMARKS.md); 0.05 put rows out of
/// order in a 64-d tree space (tests/forest.rs). Cosine's estimate is half
/// a squared distance, so its 0.1 is already as tight (0.08 put rows out of
/// order), and inner product's has no direction to err in. (A slack of 0.3
/// past the first batch re-ranked almost every candidate of a deep scan, at
/// 10× the cost, for the recall a larger pool gives.)
fn slack(metric: Metric) -> f32 {
    match metric {
        Metric::L2 => 0.08,
        Metric::Cosine | Metric::InnerProduct => 0.1,
    }
}

impl SearchParams {
    /// The first batch a search of an index of this metric re-ranks.
    pub fn first_batch(&self, metric: Metric) -> usize {
        match self.rerank {
            0 => default_rerank(metric),
            r => r,
        }
    }
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            search_k: DEFAULT_SEARCH_K,
            rerank: 0,
        }
    }
}

/// f32 ordered by `total_cmp` (NaN sorts after +inf).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ord32(f32);
impl Eq for Ord32 {}
impl PartialOrd for Ord32 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ord32 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// An ordered scan. Yields `(tid, exact distance)`: re-ranks the best
/// `rerank` candidates by code, then returns the closest re-ranked row once
/// no candidate not yet re-ranked is estimated closer (re-ranking more in
/// small steps until then), so rows leave in near-exact order; the candidate
/// pool grows with the rows returned, until every live item has been
/// returned exactly once.
pub struct Searcher<S: PageStore> {
    /// Owned: a caller that shares a store passes `&store`.
    store: S,
    meta: Meta,
    params: SearchParams,
    query: Vec<f16>,
    query_norm_sq: f32,
    /// Centred tree-space query (split margins).
    tree_query: Vec<f32>,
    tree_query_norm_sq: f32,
    /// What scores the leaf codes: the centred tree-space query for L2
    /// and cosine, the uncentred one for inner product.
    code_query: QueryCode,
    /// Nodes to visit; priority = smallest margin on the path (Annoy).
    nodes: BinaryHeap<(Ord32, NodeKey)>,
    seen: HashSet<u64, BuildHasherDefault<LocHasher>>,
    scored: usize,
    /// Scored by code, not yet re-ranked.
    approx: BinaryHeap<Reverse<(Ord32, ItemLoc)>>,
    /// Re-ranked, not yet returned.
    exact: BinaryHeap<Reverse<(Ord32, Tid)>>,
    returned: usize,
    /// `q · mean` in the tree space: what inner-product estimates lack to
    /// be comparable with exact distances.
    ip_shift: f32,
    vector: Vec<f16>,
    /// Set once the pages turned out corrupted.
    failed: bool,
}

/// Hashes the u64 item keys of the seen-set with one SplitMix64 finaliser,
/// several times cheaper than SipHash (no untrusted keys here).
#[derive(Default)]
struct LocHasher(u64);

impl Hasher for LocHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        let mut z = (self.0 ^ x).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.0 = z ^ (z >> 31);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// NodeRef with a total order for the heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct NodeKey {
    block: u32,
    slot: u16,
    kind: u16,
    depth: u16,
}

impl NodeKey {
    fn new(r: NodeRef, depth: u16) -> Self {
        NodeKey {
            block: r.block,
            slot: r.slot,
            kind: r.kind,
            depth,
        }
    }
}

impl<S: PageStore> Searcher<S> {
    /// Starts a search; the metric is the index's (from the metapage).
    pub fn new(store: S, query: &[f16], params: SearchParams) -> Result<Self, Corruption> {
        assert_eq!(query.len(), DIMS, "query must have {DIMS} dimensions");
        let meta = Meta::read(&store)?;
        let tree_query = meta.space.query(query);
        let tree_query_norm_sq = tree_query.iter().map(|x| x * x).sum();
        let nodes = meta
            .roots
            .iter()
            .filter(|r| r.kind != NODE_EMPTY)
            .map(|&r| (Ord32(f32::INFINITY), NodeKey::new(r, 0)))
            .collect();
        let (code_query, ip_shift) = match meta.space.metric {
            Metric::InnerProduct => {
                let uncentred = meta.space.uncentred(&tree_query);
                let shift = dot_f32(&uncentred, &meta.space.basis.offset);
                (QueryCode::new(&uncentred), shift)
            }
            Metric::L2 | Metric::Cosine => (QueryCode::new(&tree_query), 0.0),
        };
        Ok(Searcher {
            store,
            params: SearchParams {
                search_k: params.search_k.max(1),
                rerank: params.first_batch(meta.space.metric),
            },
            query: query.to_vec(),
            query_norm_sq: imgsim_kernels::norm_squared(query),
            tree_query,
            tree_query_norm_sq,
            code_query,
            nodes,
            seen: HashSet::with_capacity_and_hasher(
                2 * params.search_k,
                BuildHasherDefault::default(),
            ),
            scored: 0,
            approx: BinaryHeap::new(),
            exact: BinaryHeap::new(),
            returned: 0,
            ip_shift,
            vector: vec![f16::ZERO; DIMS],
            meta,
            failed: false,
        })
    }

    fn advance(&mut self) -> Result<Option<(Tid, f32)>, Corruption> {
        loop {
            // Rows past the first ten (a plain LIMIT 10 never gets there).
            let deep = self.returned.saturating_sub(10);
            let wanted = self.params.search_k + CANDIDATES_PER_ROW * deep;
            if !self.nodes.is_empty()
                && (self.approx.len() < self.params.rerank || self.scored < wanted)
            {
                self.gather(wanted.max(self.scored + self.params.search_k))?;
            }
            if let Some(&Reverse((d, tid))) = self.exact.peek() {
                let beaten = self
                    .approx
                    .peek()
                    .is_some_and(|Reverse((e, _))| self.could_be_closer(e.0, d.0));
                if !beaten {
                    self.exact.pop();
                    self.returned += 1;
                    return Ok(Some((tid, d.0)));
                }
            } else if self.approx.is_empty() {
                return Ok(None);
            }
            let first = self.returned == 0 && self.exact.is_empty();
            self.rerank_batch(if first {
                self.params.rerank
            } else {
                RERANK_STEP
            })?;
        }
    }

    /// Whether a candidate whose code estimate is `estimate` may be closer
    /// than `distance` (exact, in the metric's units).
    fn could_be_closer(&self, estimate: f32, distance: f32) -> bool {
        let estimated = match self.meta.space.metric {
            // Squared tree-space distance of (for cosine, normalised) vectors.
            Metric::L2 => estimate.max(0.0).sqrt(),
            Metric::Cosine => estimate.max(0.0) / 2.0,
            Metric::InnerProduct => estimate - self.ip_shift,
        };
        estimated - slack(self.meta.space.metric) * estimated.abs() < distance
    }

    /// Visits nodes until `target` distinct candidates have been scored or
    /// the trees are exhausted.
    fn gather(&mut self, target: usize) -> Result<(), Corruption> {
        while self.scored < target {
            let Some((Ord32(priority), node)) = self.nodes.pop() else {
                break;
            };
            // Most often the node after this one is the queue's top now
            // (always after a leaf): its page's cache misses can overlap
            // this visit.
            if let Some(&(_, next)) = self.nodes.peek() {
                self.prefetch_node(next);
            }
            if node.depth > MAX_TREE_DEPTH {
                return Err(Corruption::new(
                    node.block,
                    "tree path too deep: pages form a cycle",
                ));
            }
            match node.kind {
                NODE_SPLIT => self.visit_split(node, priority)?,
                NODE_LEAF => self.visit_leaf(node, priority)?,
                _ => {
                    return Err(Corruption::new(
                        node.block,
                        format!("bad node kind {}", node.kind),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Visits a split node, and goes on down while the next node the queue
    /// would give is a child stored on the same page (the build packs
    /// subtrees into pages): one page read then serves several levels of a
    /// descent, with the same nodes visited in the same order as one visit
    /// per read would.
    fn visit_split(&mut self, node: NodeKey, priority: f32) -> Result<(), Corruption> {
        let td = self.meta.reduced_dims();
        let node_bytes = split_node_bytes(td);
        let page = read_tree_page(&self.store, node.block, PageKind::Split)?;
        let count = SplitPageHeader::read(&page).count;
        if count as usize > splits_per_page(page.len(), td) {
            return Err(Corruption::new(
                node.block,
                format!("split page holds {count} nodes"),
            ));
        }
        let mut on_page = vec![(node.slot, node.depth, priority)];
        while let Some((slot, depth, priority)) = on_page.pop() {
            if slot >= count {
                return Err(Corruption::new(
                    node.block,
                    format!("split slot {slot} of {count}"),
                ));
            }
            if depth > MAX_TREE_DEPTH {
                return Err(Corruption::new(
                    node.block,
                    "tree path too deep: pages form a cycle",
                ));
            }
            let at = SplitPageHeader::SIZE + slot as usize * node_bytes;
            let (header, margin) = split_margin(&page[at..at + node_bytes], &self.tree_query);
            for (child, child_priority) in [
                (header.right, priority.min(margin)),
                (header.left, priority.min(-margin)),
            ] {
                // A child on this page that would leave the queue next is
                // expanded now; the others wait in the queue as usual.
                let next_anyway = self
                    .nodes
                    .peek()
                    .is_none_or(|&(Ord32(top), _)| child_priority >= top);
                if child.kind == NODE_SPLIT && child.block == node.block && next_anyway {
                    on_page.push((child.slot, depth + 1, child_priority));
                } else {
                    let key = NodeKey::new(child, depth + 1);
                    if next_anyway {
                        // The next node visited once this page is done.
                        self.prefetch_node(key);
                    }
                    self.nodes.push((Ord32(child_priority), key));
                }
            }
        }
        Ok(())
    }

    /// Hints the store that `node` will be read soon (see [`PageStore::prefetch`]).
    fn prefetch_node(&self, node: NodeKey) {
        let offset = match node.kind {
            NODE_SPLIT => {
                SplitPageHeader::SIZE
                    + usize::from(node.slot) * split_node_bytes(self.meta.reduced_dims())
            }
            _ => 0,
        };
        self.store.prefetch(node.block, offset);
    }

    /// Pushes both children of a split node with margin `margin`, each with
    /// the smallest margin on its path: Annoy's priority.
    fn push_children(&mut self, header: &SplitNodeHeader, margin: f32, depth: u16, priority: f32) {
        self.nodes.push((
            Ord32(priority.min(margin)),
            NodeKey::new(header.right, depth + 1),
        ));
        self.nodes.push((
            Ord32(priority.min(-margin)),
            NodeKey::new(header.left, depth + 1),
        ));
    }

    fn visit_leaf(&mut self, node: NodeKey, priority: f32) -> Result<(), Corruption> {
        let td = self.meta.reduced_dims();
        let page = read_tree_page(&self.store, node.block, PageKind::Leaf)?;
        let entries = match leaf::parse(node.block, &page, td)? {
            Leaf::Split(split_node) => {
                let (split, margin) = split_margin(split_node, &self.tree_query);
                drop(page);
                self.push_children(&split, margin, node.depth, priority);
                return Ok(());
            }
            Leaf::Entries(entries) => entries,
        };
        for (entry, code) in entries.iter() {
            let loc = entry.item();
            if !self.seen.insert(loc.key()) {
                continue;
            }
            let d = if self.meta.space.metric == Metric::InnerProduct {
                // The item is ≈ centre + scale·code, and q·centre is the same
                // for every item, so −scale·(q·code) orders like −q·x.
                -entry.scale * self.code_query.dot(code)
            } else {
                code_distance(
                    &self.code_query,
                    self.tree_query_norm_sq,
                    entry.scale,
                    entry.code_norm_sq,
                    code,
                )
            };
            self.approx.push(Reverse((Ord32(d), loc)));
            self.scored += 1;
        }
        Ok(())
    }

    /// Moves the best `count` candidates by code to the exact heap.
    fn rerank_batch(&mut self, count: usize) -> Result<(), Corruption> {
        let take = count.min(self.approx.len());
        let mut batch: Vec<ItemLoc> = (0..take)
            .filter_map(|_| self.approx.pop())
            .map(|Reverse((_, loc))| loc)
            .collect();
        // Page order: neighbouring records share pages.
        batch.sort_unstable();
        for (i, &loc) in batch.iter().enumerate() {
            if let Some(next) = batch.get(i + 1) {
                self.store.prefetch(next.block, usize::from(next.offset));
            }
            let header = read_item(&self.store, loc, &mut self.vector)?;
            if header.flags & ITEM_DELETED != 0 {
                continue;
            }
            let d = exact_distance(
                self.meta.space.metric,
                &self.query,
                self.query_norm_sq,
                &self.vector,
                header.norm_sq,
            );
            self.exact
                .push(Reverse((Ord32(d), Tid::from_bytes(header.tid))));
        }
        Ok(())
    }
}

impl<S: PageStore> Iterator for Searcher<S> {
    type Item = Result<(Tid, f32), Corruption>;

    /// The next item and its exact distance; `None` once every item was
    /// returned. After an error (corrupted pages) the scan is over.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.advance();
        self.failed = next.is_err();
        next.transpose()
    }
}

/// A tree page by a block number read from another page: checked, since a
/// damaged page may point anywhere. A free function so the guard borrows
/// only the store while the searcher's other fields change.
fn read_tree_page<S: PageStore>(
    store: &S,
    block: u32,
    kind: PageKind,
) -> Result<S::Read<'_>, Corruption> {
    store.read_kind(block, kind).ok_or_else(|| {
        Corruption::new(
            block,
            format!("tree points at a block that is not a {kind:?} page"),
        )
    })
}

/// The distance reported for `metric`, from the exact vectors.
pub fn exact_distance(metric: Metric, q: &[f16], q_norm_sq: f32, x: &[f16], x_norm_sq: f32) -> f32 {
    match metric {
        Metric::L2 => imgsim_kernels::l2_squared(q, x).sqrt(),
        Metric::Cosine => {
            let denom = (q_norm_sq * x_norm_sq).sqrt();
            if denom > 0.0 {
                1.0 - imgsim_kernels::dot(q, x) / denom
            } else {
                f32::NAN
            }
        }
        Metric::InnerProduct => -imgsim_kernels::dot(q, x),
    }
}
