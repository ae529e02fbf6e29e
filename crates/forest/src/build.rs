//! Index build: stream the items once into item pages, keeping only their
//! reduced vectors in memory, then build the trees and write them.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use half::f16;

use crate::format::*;
use std::sync::Arc;

use crate::insert::{add_to_tree, CodedPoint, NewEntry};
use crate::items::{for_each_record_from, read_item, ItemAppender, ItemLoc};
use crate::meta::{write_basis, Meta, META_BLOCK};
use crate::pca;
use crate::space::{dot_code, quantize, Rng, TreeSpace};
use crate::store::{PageKind, PageStore};
use crate::{leaf, two_means, Metric, Options, Tid};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildPhase {
    /// Items read and written to item pages (total unknown: 0).
    LoadingItems,
    /// The tree space learned from the sample.
    LearningSpace,
    /// Items coded for the leaves.
    Coding,
    /// Trees built and written.
    BuildingTrees,
    /// Items past the memory budget added to the written trees one by one.
    StreamingItems,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BuildError {
    InvalidOptions(String),
    /// A vector does not have 2048 dimensions.
    WrongDimensions {
        tid: Tid,
        dims: usize,
    },
    /// The store already holds pages.
    StoreNotEmpty,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidOptions(s) => write!(f, "invalid annoy options: {s}"),
            BuildError::WrongDimensions { tid, dims } => {
                write!(
                    f,
                    "vector at ({},{}) has {dims} dimensions, expected {DIMS}",
                    tid.block, tid.offset
                )
            }
            BuildError::StoreNotEmpty => write!(f, "index relation is not empty"),
        }
    }
}

impl std::error::Error for BuildError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildStats {
    pub items: u64,
    /// Items added to the trees one by one after they were built, because
    /// the memory budget held only the others.
    pub streamed: u64,
    pub leaf_pages: u32,
    pub split_pages: u32,
    pub item_pages: u32,
}

impl BuildStats {
    /// The stats of a build over `items` existing records, before any page is written.
    pub(crate) fn of_items(items: u64) -> Self {
        BuildStats {
            items,
            streamed: 0,
            leaf_pages: 0,
            split_pages: 0,
            item_pages: 0,
        }
    }
}

/// Builds an index from `items` into an empty `store`; see [`Builder`].
pub fn build<'v, S: PageStore>(
    store: &S,
    options: Options,
    metric: Metric,
    items: impl IntoIterator<Item = (Tid, &'v [f16])>,
    memory_budget_bytes: usize,
    progress: &mut dyn FnMut(BuildPhase, u64, u64),
) -> Result<BuildStats, BuildError> {
    let mut builder = Builder::new(store, options, metric, memory_budget_bytes)?;
    for (i, (tid, v)) in items.into_iter().enumerate() {
        builder.add(tid, v)?;
        if i % 1024 == 1023 {
            progress(BuildPhase::LoadingItems, i as u64 + 1, 0);
        }
    }
    Ok(builder.finish(progress))
}

/// Push-style build, for scans that call back once per tuple.
pub struct Builder<'s, S: PageStore + 's> {
    store: &'s S,
    options: Options,
    metric: Metric,
    leaf_size: usize,
    budget: usize,
    appender: ItemAppender<'s, S>,
    threads: usize,
    thread_init: fn(),
    /// The items the tree space is learned from.
    sample: Sample,
    /// Items whose codes the build keeps and builds the trees from.
    locs: Vec<ItemLoc>,
    /// Once the budget is used up: the first record of the items that are
    /// streamed into the trees afterwards, and their number.
    streaming_from: Option<ItemLoc>,
    streamed: u64,
}

/// Items coded in memory whatever the budget (about 0.4 MB), so the trees
/// always have a shape to stream the rest into.
const MIN_IN_MEMORY: u64 = 1000;

/// Items read back at a time while coding, and projected together on one
/// thread (32 vectors of 8 KB stay in cache while the basis streams past).
const CODING_CHUNK: usize = 512;
const PROJECTION_BATCH: usize = 32;

impl<'s, S: PageStore> Builder<'s, S> {
    /// Memory the build needs for `items` items, so the caller can fail
    /// before scanning: the sample and the basis being learned, then per
    /// item its location, code with scale and norm, and per-tree work (item
    /// ids, sort keys, the normals of the split nodes: about one per 8
    /// items) for each of `threads` trees built at once.
    pub fn required_memory(options: &Options, items: u64, threads: usize) -> usize {
        let d = options.reduced_dims as usize;
        let sample_rows = (items as usize).min(pca::SAMPLE_ROWS);
        let fixed = 4 * DIMS * (sample_rows + 3 * d);
        let per_tree = 16 + d / 2;
        let per_item = 8 + code_stride(d) + 8 + per_tree * threads.max(1);
        per_item
            .saturating_mul(items as usize)
            .saturating_add(fixed)
    }

    /// Builds on up to `threads` threads (this one included; fewer trees at
    /// once if the memory budget does not cover that many). Each helper
    /// thread runs `thread_init` first; it never touches the store. The
    /// result does not depend on the thread count.
    pub fn with_threads(mut self, threads: usize, thread_init: fn()) -> Self {
        self.threads = threads.max(1);
        self.thread_init = thread_init;
        self
    }

    pub fn new(
        store: &'s S,
        options: Options,
        metric: Metric,
        memory_budget_bytes: usize,
    ) -> Result<Self, BuildError> {
        let reduced = options.reduced_dims as usize;
        if !reduced.is_power_of_two() || !(MIN_REDUCED_DIMS..=MAX_REDUCED_DIMS).contains(&reduced) {
            return Err(BuildError::InvalidOptions(format!(
                "reduced_dims must be a power of two in {MIN_REDUCED_DIMS}..={MAX_REDUCED_DIMS}"
            )));
        }
        if options.trees == 0 || options.trees as usize > MAX_TREES {
            return Err(BuildError::InvalidOptions(format!(
                "trees must be in 1..={MAX_TREES}"
            )));
        }
        let capacity = leaf_capacity(store.body_size(), reduced);
        let leaf_size = match options.leaf_size as usize {
            0 => capacity,
            n if n <= capacity => n,
            n => {
                return Err(BuildError::InvalidOptions(format!(
                    "leaf_size {n} exceeds the {capacity} entries a page holds"
                )))
            }
        };
        if leaf_size < 2 {
            return Err(BuildError::InvalidOptions(
                "leaf_size must be at least 2".into(),
            ));
        }
        if store.nblocks() != 0 {
            return Err(BuildError::StoreNotEmpty);
        }
        // Block 0 is reserved for the metapage, written last.
        let (meta_block, _) = store.allocate(PageKind::Meta);
        debug_assert_eq!(meta_block, META_BLOCK);
        Ok(Builder {
            store,
            options,
            metric,
            leaf_size,
            budget: memory_budget_bytes,
            appender: ItemAppender::new_chain(store),
            threads: 1,
            thread_init: || {},
            sample: Sample::new(options.seed),
            locs: Vec::new(),
            streaming_from: None,
            streamed: 0,
        })
    }

    /// Writes one item to the item pages and samples it for the tree space.
    /// Returns `true` for the first item that no longer fits the memory
    /// budget: it and every later item are streamed into the trees after
    /// they are built (slower, but the build goes on in bounded memory).
    pub fn add(&mut self, tid: Tid, vector: &[f16]) -> Result<bool, BuildError> {
        if vector.len() != DIMS {
            return Err(BuildError::WrongDimensions {
                tid,
                dims: vector.len(),
            });
        }
        let norm_sq = imgsim_kernels::norm_squared(vector);
        let loc = self
            .appender
            .append(ItemRecordHeader::live(tid, norm_sq, 0), vector);
        let mut started_streaming = false;
        if self.streaming_from.is_none() {
            let n = self.locs.len() as u64 + 1;
            // Fewer trees at once rather than streaming when memory is tight.
            while self.threads > 1
                && Self::required_memory(&self.options, n, self.threads) > self.budget
            {
                self.threads -= 1;
            }
            if n > MIN_IN_MEMORY
                && Self::required_memory(&self.options, n, self.threads) > self.budget
            {
                self.streaming_from = Some(loc);
                started_streaming = true;
            } else {
                self.locs.push(loc);
            }
        }
        if self.streaming_from.is_some() {
            self.streamed += 1;
        }
        self.sample.offer(vector, norm_sq, self.metric);
        Ok(started_streaming)
    }

    /// Learns the tree space, codes the items, builds and writes the trees,
    /// then the metapage.
    pub fn finish(self, progress: &mut dyn FnMut(BuildPhase, u64, u64)) -> BuildStats {
        let Builder {
            store,
            options,
            metric,
            leaf_size,
            appender,
            threads,
            thread_init,
            sample,
            locs,
            streaming_from,
            streamed,
            ..
        } = self;
        let n = locs.len();
        let (item_tail, item_tail_used) = appender.finish();
        let item_head = locs.first().map_or(item_tail, |l| l.block);
        let item_pages = store.nblocks() - 1;

        let mut stats = BuildStats {
            items: n as u64 + streamed,
            streamed,
            leaf_pages: 0,
            split_pages: 0,
            item_pages,
        };
        let plan = ForestPlan {
            options,
            metric,
            leaf_size,
            threads,
            thread_init,
        };
        let forest = build_forest(store, &plan, sample.rows, &locs, &mut stats, progress);
        let d = options.reduced_dims as usize;
        let meta = Meta {
            header: MetaHeader {
                magic: META_MAGIC,
                version: FORMAT_VERSION,
                dims: DIMS as u32,
                metric: metric as u32,
                reduced_dims: d as u32,
                trees: options.trees,
                leaf_size: leaf_size as u32,
                basis_block: forest.basis_block,
                basis_pages: basis_pages(store.body_size(), d) as u32,
                basis_checksum: forest.basis_checksum,
                rebuild_at: if stats.items < u64::from(options.rebuild_rows) {
                    options.rebuild_rows
                } else {
                    0
                },
                seed: options.seed,
                item_count: n as u64 + streamed,
                live_count: n as u64 + streamed,
                item_head,
                item_tail,
                item_tail_used,
                ..MetaHeader::default()
            },
            roots: forest.roots,
            space: forest.space,
        };
        if let Some(start) = streaming_from {
            stream_items(store, &meta, start, streamed, progress);
        }
        meta.write_to(&mut store.write(META_BLOCK));
        stats
    }
}

/// A uniform sample of up to [`pca::SAMPLE_ROWS`] items (reservoir
/// sampling, Algorithm R: every item offered is kept with probability
/// `SAMPLE_ROWS / offered`), as rows of 2048 f32, cosine rows normalised.
pub(crate) struct Sample {
    pub rows: Vec<f32>,
    rng: Rng,
    offered: usize,
}

impl Sample {
    pub fn new(seed: u64) -> Self {
        Sample {
            rows: Vec::new(),
            rng: Rng::new(seed ^ 0x5A3F_1E5A_3F1E_5A3F),
            offered: 0,
        }
    }

    pub fn offer(&mut self, vector: &[f16], norm_sq: f32, metric: Metric) {
        self.offered += 1;
        let slot = if self.offered <= pca::SAMPLE_ROWS {
            self.rows.resize(self.offered * DIMS, 0.0);
            Some(self.offered - 1)
        } else {
            Some(self.rng.below(self.offered)).filter(|&j| j < pca::SAMPLE_ROWS)
        };
        if let Some(j) = slot {
            let scale = match metric {
                Metric::Cosine if norm_sq > 0.0 => 1.0 / norm_sq.sqrt(),
                _ => 1.0,
            };
            for (o, v) in self.rows[j * DIMS..(j + 1) * DIMS].iter_mut().zip(vector) {
                *o = v.to_f32() * scale;
            }
        }
    }
}

/// How to build a forest: the index's options and metric, the leaf size
/// they give, and the threads to build on.
pub(crate) struct ForestPlan {
    pub options: Options,
    pub metric: Metric,
    pub leaf_size: usize,
    pub threads: usize,
    pub thread_init: fn(),
}

impl ForestPlan {
    /// New trees for an index with the options its metapage records (the
    /// rebuild and the compaction): never due a rebuild of its own.
    pub(crate) fn for_index(meta: &Meta, threads: usize, thread_init: fn()) -> Self {
        let h = &meta.header;
        ForestPlan {
            options: Options {
                trees: h.trees,
                leaf_size: h.leaf_size,
                reduced_dims: h.reduced_dims,
                seed: h.seed,
                rebuild_rows: 0,
            },
            metric: meta.space.metric,
            leaf_size: h.leaf_size as usize,
            threads,
            thread_init,
        }
    }
}

/// A forest written to pages: its tree space (basis pages from
/// `basis_block`, with their checksum) and one root per tree.
pub(crate) struct Forest {
    pub space: TreeSpace,
    pub basis_block: u32,
    pub basis_checksum: u64,
    pub roots: Vec<NodeRef>,
}

/// Learns the tree space from `sample` (rows of 2048 f32, cosine rows
/// normalised), codes the items at `locs`, builds the trees and writes the
/// basis and tree pages (counted in `stats`). Nothing points at the pages
/// yet: the caller writes the metapage.
pub(crate) fn build_forest<S: PageStore>(
    store: &S,
    plan: &ForestPlan,
    sample: Vec<f32>,
    locs: &[ItemLoc],
    stats: &mut BuildStats,
    progress: &mut dyn FnMut(BuildPhase, u64, u64),
) -> Forest {
    let ForestPlan {
        options,
        metric,
        threads,
        thread_init,
        ..
    } = *plan;
    let d = options.reduced_dims as usize;
    progress(BuildPhase::LearningSpace, 0, 0);
    let basis = pca::learn_basis(&sample, d, options.seed, threads, thread_init);
    drop(sample);
    let (basis_block, basis_checksum) = write_basis(store, &basis);
    let space = TreeSpace::new(metric, Arc::new(basis));
    let coded = code_items(store, &space, locs, threads, thread_init, progress);
    let roots = build_trees(store, plan, &coded, locs, stats, progress);
    Forest {
        space,
        basis_block,
        basis_checksum,
        roots,
    }
}

/// Builds the trees over the items at `locs` (coded in `coded`, in the same
/// order) and writes their pages (counted in `stats`); returns one root per
/// tree. Nothing points at the pages yet: the caller writes the metapage.
pub(crate) fn build_trees<S: PageStore>(
    store: &S,
    plan: &ForestPlan,
    coded: &CodedItems,
    locs: &[ItemLoc],
    stats: &mut BuildStats,
    progress: &mut dyn FnMut(BuildPhase, u64, u64),
) -> Vec<NodeRef> {
    let ForestPlan {
        options,
        leaf_size,
        threads,
        thread_init,
        ..
    } = *plan;
    let n = locs.len();
    let d = options.reduced_dims as usize;
    // Trees are built in memory on `threads` threads and written here, in
    // tree order, as they become available.
    let trees = options.trees as usize;
    let build_tree = |t: usize, stop: &AtomicBool| -> BuiltTree {
        let mut rng = Rng::new(
            options
                .seed
                .wrapping_add((t as u64).wrapping_mul(0xA24B_AED4_963E_E407)),
        );
        let mut tree = TreeBuilder {
            coded,
            reduced_dims: d,
            leaf_size,
            rng: &mut rng,
            nodes: Vec::new(),
        };
        let mut ids: Vec<u32> = (0..n as u32).collect();
        let root = (n > 0).then(|| tree.build_node(&mut ids, stop))?;
        Some((tree.nodes, root))
    };
    let next_tree = AtomicUsize::new(0);
    let claim = || {
        let t = next_tree.fetch_add(1, Ordering::Relaxed);
        (t < trees).then_some(t)
    };
    let stop = AtomicBool::new(false);
    let mut roots = vec![NodeRef::EMPTY; trees];
    std::thread::scope(|scope| {
        // On the way out, normally or unwinding from an ERROR raised by
        // `progress` (query cancel), helpers stop before the scope joins them.
        let _stop_helpers = SetOnDrop(&stop);
        let (done_tx, done_rx) = mpsc::channel();
        for _ in 1..threads.min(trees) {
            let done_tx = done_tx.clone();
            let (build_tree, claim, stop) = (&build_tree, &claim, &stop);
            scope.spawn(move || {
                thread_init();
                while let Some(t) = claim() {
                    if stop.load(Ordering::Relaxed)
                        || done_tx.send((t, build_tree(t, stop))).is_err()
                    {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut built: Vec<Option<BuiltTree>> = (0..trees).map(|_| None).collect();
        for t in 0..trees {
            while built[t].is_none() {
                if let Some(own) = claim() {
                    built[own] = Some(build_tree(own, &stop));
                    continue;
                }
                match done_rx.recv_timeout(Duration::from_millis(100)) {
                    Ok((i, tree)) => built[i] = Some(tree),
                    // Lets `progress` see a cancel while helpers work.
                    Err(RecvTimeoutError::Timeout) => {
                        progress(BuildPhase::BuildingTrees, t as u64, trees as u64)
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        panic!("a tree-building thread ended without its tree")
                    }
                }
            }
            if let Some(Some((nodes, root))) = built[t].take() {
                roots[t] = write_tree(store, &nodes, root, coded, locs, d, stats);
            }
            progress(BuildPhase::BuildingTrees, t as u64 + 1, trees as u64);
        }
    });
    roots
}

/// Adds every record from `start` on to the written trees, one at a time
/// (an insert's descent and leaf splits, without its record and metapage
/// work: the build wrote the records and writes the metapage last).
fn stream_items<S: PageStore>(
    store: &S,
    meta: &Meta,
    start: ItemLoc,
    total: u64,
    progress: &mut dyn FnMut(BuildPhase, u64, u64),
) {
    let mut vector = vec![f16::ZERO; DIMS];
    let mut done = 0u64;
    for_each_record_from(store, start, |loc| {
        let header =
            read_item(store, loc, &mut vector).expect("the build reads back the records it wrote");
        let coded = CodedPoint::of(&meta.space, &vector, header.norm_sq);
        let new = NewEntry {
            entry: coded.entry(loc),
            code: &coded.code,
            point: &coded.point,
            seed: meta.header.seed ^ loc.key(),
        };
        for (t, root) in meta.roots.iter().enumerate() {
            add_to_tree(store, *root, t, &new).expect("the build's own trees are sound");
        }
        done += 1;
        if done.is_multiple_of(256) || done == total {
            progress(BuildPhase::StreamingItems, done, total);
        }
    });
}

/// Reads every item back from the item pages (this thread: the store is
/// not shared) and codes it, projecting a chunk of items at a time on
/// `threads` threads.
pub(crate) fn code_items<S: PageStore>(
    store: &S,
    space: &TreeSpace,
    locs: &[ItemLoc],
    threads: usize,
    thread_init: fn(),
    progress: &mut dyn FnMut(BuildPhase, u64, u64),
) -> CodedItems {
    let d = space.reduced_dims;
    let stride = code_stride(d);
    let n = locs.len();
    let mut coded = CodedItems {
        stride,
        codes: vec![0u8; n * stride],
        scales: vec![0.0; n],
        code_norms_sq: vec![0.0; n],
    };
    let mut vectors = vec![f16::ZERO; CODING_CHUNK * DIMS];
    let mut norms = vec![0f32; CODING_CHUNK];
    let mut reduced = vec![f16::ZERO; CODING_CHUNK * d];
    let mut v = vec![0f32; d];
    for (c, chunk) in locs.chunks(CODING_CHUNK).enumerate() {
        for (k, &loc) in chunk.iter().enumerate() {
            let header = read_item(store, loc, &mut vectors[k * DIMS..(k + 1) * DIMS])
                .expect("the build reads back the records it wrote");
            norms[k] = header.norm_sq;
        }
        let per_batch = PROJECTION_BATCH * d;
        pca::parallel_chunks(
            &mut reduced[..chunk.len() * d],
            per_batch,
            threads,
            thread_init,
            |b, out| {
                let items = b * PROJECTION_BATCH..b * PROJECTION_BATCH + out.len() / d;
                space.reduce_items(
                    &vectors[items.start * DIMS..items.end * DIMS],
                    &norms[items],
                    out,
                );
            },
        );
        for k in 0..chunk.len() {
            let i = c * CODING_CHUNK + k;
            let code = &mut coded.codes[i * stride..i * stride + d];
            space.item_vector(&reduced[k * d..(k + 1) * d], &mut v);
            let (scale, norm) = quantize(&v, code);
            coded.scales[i] = scale;
            coded.code_norms_sq[i] = norm;
        }
        progress(
            BuildPhase::Coding,
            (c * CODING_CHUNK + chunk.len()) as u64,
            n as u64,
        );
    }
    coded
}

/// int8 codes of all items, indexed by build item number.
pub(crate) struct CodedItems {
    pub stride: usize,
    pub codes: Vec<u8>,
    pub scales: Vec<f32>,
    pub code_norms_sq: Vec<f32>,
}

impl CodedItems {
    pub fn code(&self, i: u32) -> &[u8] {
        let i = i as usize;
        &self.codes[i * self.stride..(i + 1) * self.stride]
    }

    /// `normal · item` for a tree-space vector `normal`.
    pub fn project(&self, normal: &[f32], i: u32) -> f32 {
        self.scales[i as usize] * dot_code(normal, &self.code(i)[..normal.len()])
    }

    pub fn decode_into(&self, i: u32, out: &mut [f32]) {
        let s = self.scales[i as usize];
        for (o, c) in out.iter_mut().zip(self.code(i)) {
            *o = s * f32::from(*c as i8);
        }
    }
}

pub(crate) enum Node {
    Split {
        normal: Vec<f32>,
        offset: f32,
        left: usize,
        right: usize,
    },
    Leaf {
        items: Vec<u32>,
    },
}

pub(crate) struct TreeBuilder<'a> {
    pub coded: &'a CodedItems,
    pub reduced_dims: usize,
    pub leaf_size: usize,
    pub rng: &'a mut Rng,
    /// Children always precede their parent (post-order).
    pub nodes: Vec<Node>,
}

/// A tree built in memory: its nodes and the root's index (`None`: no items).
type BuiltTree = Option<(Vec<Node>, usize)>;

/// Sets the flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl TreeBuilder<'_> {
    /// Builds the subtree of `ids`; once `stop` is set it only finishes
    /// quickly (the tree is then discarded).
    fn build_node(&mut self, ids: &mut [u32], stop: &AtomicBool) -> usize {
        if ids.len() <= self.leaf_size || stop.load(Ordering::Relaxed) {
            self.nodes.push(Node::Leaf {
                items: ids.to_vec(),
            });
            return self.nodes.len() - 1;
        }
        let (normal, offset, cut) = two_means::split(self.coded, self.reduced_dims, self.rng, ids);
        let (left_ids, right_ids) = ids.split_at_mut(cut);
        let left = self.build_node(left_ids, stop);
        let right = self.build_node(right_ids, stop);
        self.nodes.push(Node::Split {
            normal,
            offset,
            left,
            right,
        });
        self.nodes.len() - 1
    }
}

/// Writes one tree: each leaf to its own page, then the split nodes packed
/// into split pages by subtree (see [`pack_subtrees`]). Returns the root
/// reference.
fn write_tree<S: PageStore>(
    store: &S,
    nodes: &[Node],
    root: usize,
    coded: &CodedItems,
    locs: &[ItemLoc],
    reduced_dims: usize,
    stats: &mut BuildStats,
) -> NodeRef {
    let mut refs = vec![NodeRef::EMPTY; nodes.len()];
    for (idx, node) in nodes.iter().enumerate() {
        let Node::Leaf { items } = node else { continue };
        let entries = items.iter().map(|&i| {
            let loc = locs[i as usize];
            let entry = LeafEntryHeader {
                item_block: loc.block,
                item_offset: loc.offset,
                reserved: 0,
                scale: coded.scales[i as usize],
                code_norm_sq: coded.code_norms_sq[i as usize],
            };
            (entry, coded.code(i))
        });
        let (block, _page) = leaf::write_new(store, entries);
        refs[idx] = NodeRef::leaf(block);
        stats.leaf_pages += 1;
    }

    let per_page = splits_per_page(store.body_size(), reduced_dims);
    let node_bytes = split_node_bytes(reduced_dims);
    // Pages are written children first, so every child's reference is known
    // when its parent is written: the reverse of the top-down packing.
    for group in pack_subtrees(nodes, root, per_page).iter().rev() {
        let (block, mut page) = store.allocate(PageKind::Split);
        for (slot, &idx) in group.iter().enumerate() {
            refs[idx] = NodeRef::split(block, slot as u16);
        }
        SplitPageHeader {
            count: group.len() as u16,
            ..SplitPageHeader::default()
        }
        .write(&mut page);
        for (slot, &idx) in group.iter().enumerate() {
            let Node::Split {
                normal,
                offset,
                left,
                right,
            } = &nodes[idx]
            else {
                unreachable!("packed splits only")
            };
            let at = SplitPageHeader::SIZE + slot * node_bytes;
            let header = SplitNodeHeader {
                left: refs[*left],
                right: refs[*right],
                offset: *offset,
                reserved: 0,
            };
            write_split_node(&header, normal, &mut page[at..at + node_bytes]);
        }
        stats.split_pages += 1;
    }
    refs[root]
}

/// Groups a tree's split nodes into pages of at most `per_page`, top-down:
/// a page takes a node and its split descendants breadth first, so a search
/// that reads the page for the node also finds the next levels there (about
/// three levels per page read at 256 dimensions instead of one). Where a
/// subtree runs out before the page is full, the next subtree in line fills
/// the rest. Parents come before their children in the order returned.
fn pack_subtrees(nodes: &[Node], root: usize, per_page: usize) -> Vec<Vec<usize>> {
    let split_children = |idx: usize| match &nodes[idx] {
        Node::Split { left, right, .. } => [*left, *right]
            .into_iter()
            .filter(|&c| matches!(nodes[c], Node::Split { .. }))
            .collect(),
        Node::Leaf { .. } => Vec::new(),
    };
    let mut pages = Vec::new();
    let mut page = Vec::with_capacity(per_page);
    let mut roots: VecDeque<usize> = VecDeque::new();
    if matches!(nodes[root], Node::Split { .. }) {
        roots.push_back(root);
    }
    while let Some(subtree) = roots.pop_front() {
        if page.len() == per_page {
            pages.push(std::mem::replace(&mut page, Vec::with_capacity(per_page)));
        }
        let mut level_order = VecDeque::from([subtree]);
        while let Some(idx) = level_order.pop_front() {
            if page.len() == per_page {
                // The page is full: what is left of this subtree's frontier
                // starts subtrees of its own.
                roots.push_back(idx);
                roots.extend(level_order.drain(..));
                break;
            }
            page.push(idx);
            level_order.extend(split_children(idx));
        }
    }
    if !page.is_empty() {
        pages.push(page);
    }
    pages
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Post-order nodes of a tree `levels` splits deep: complete when
    /// `both_sides`, else a chain whose right children are leaves.
    fn tree(levels: usize, both_sides: bool) -> (Vec<Node>, usize) {
        fn grow(nodes: &mut Vec<Node>, levels: usize, both_sides: bool) -> usize {
            if levels == 0 {
                nodes.push(Node::Leaf { items: vec![0] });
                return nodes.len() - 1;
            }
            let left = grow(nodes, levels - 1, both_sides);
            let right = grow(nodes, if both_sides { levels - 1 } else { 0 }, both_sides);
            nodes.push(Node::Split {
                normal: vec![1.0],
                offset: 0.0,
                left,
                right,
            });
            nodes.len() - 1
        }
        let mut nodes = Vec::new();
        let root = grow(&mut nodes, levels, both_sides);
        (nodes, root)
    }

    fn page_of(pages: &[Vec<usize>]) -> HashMap<usize, usize> {
        let mut page_of = HashMap::new();
        for (p, page) in pages.iter().enumerate() {
            for &idx in page {
                assert!(page_of.insert(idx, p).is_none(), "node {idx} packed twice");
            }
        }
        page_of
    }

    #[test]
    fn subtrees_fill_pages_top_down() {
        // A complete tree of 63 splits, 7 to a page: nine full pages, each
        // a subtree three levels deep.
        let (nodes, root) = tree(6, true);
        let pages = pack_subtrees(&nodes, root, 7);
        assert_eq!(pages.len(), 9);
        assert!(pages.iter().all(|p| p.len() == 7));
        let page_of = page_of(&pages);
        let splits = nodes
            .iter()
            .filter(|n| matches!(n, Node::Split { .. }))
            .count();
        assert_eq!(page_of.len(), splits);
        for (idx, node) in nodes.iter().enumerate() {
            let Node::Split { left, right, .. } = node else {
                continue;
            };
            for child in [left, right] {
                if let Some(&child_page) = page_of.get(child) {
                    // Parents first, which the writer reverses so children
                    // are written before the parents that point at them.
                    assert!(page_of[&idx] <= child_page);
                }
            }
        }
        // The root's page holds its two levels below; a descent through
        // the tree's six levels reads two pages.
        assert_eq!(pages[0][0], root);
        let Node::Split { left, right, .. } = &nodes[root] else {
            unreachable!()
        };
        assert_eq!(page_of[left], 0);
        assert_eq!(page_of[right], 0);
        let mut at = root;
        let mut pages_read = vec![page_of[&root]];
        while let Node::Split { left, .. } = &nodes[at] {
            at = *left;
            if let Some(&p) = page_of.get(&at) {
                if pages_read.last() != Some(&p) {
                    pages_read.push(p);
                }
            }
        }
        assert_eq!(pages_read.len(), 2);
    }

    #[test]
    fn a_chain_of_splits_packs_densely() {
        // Every split's right child is a leaf: 20 splits in a line.
        let (nodes, root) = tree(20, false);
        let pages = pack_subtrees(&nodes, root, 7);
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [7, 7, 6]);
        assert_eq!(page_of(&pages).len(), 20);
    }

    #[test]
    fn a_tree_without_splits_needs_no_page() {
        let nodes = vec![Node::Leaf { items: vec![0, 1] }];
        assert!(pack_subtrees(&nodes, 0, 7).is_empty());
    }
}
