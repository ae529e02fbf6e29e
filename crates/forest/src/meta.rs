//! Reading, validating and writing the metapage.

use std::cell::RefCell;
use std::sync::Arc;

use half::f16;

use crate::format::*;
use crate::space::{Basis, TreeSpace};
use crate::store::{PageKind, PageStore};
use crate::{Corruption, Metric};

pub const META_BLOCK: u32 = 0;

/// Bases kept per thread (a backend's recently used indexes).
const CACHED_BASES: usize = 8;

thread_local! {
    /// Decoded bases by checksum, most recent last. A basis never changes
    /// after the build that wrote it, and its checksum is of its contents,
    /// so an entry can never be stale: a rebuilt index has a new checksum.
    static BASES: RefCell<Vec<(u64, usize, Arc<Basis>)>> = const { RefCell::new(Vec::new()) };
}

/// The basis an index's metapage names, from the cache or its pages.
fn load_basis<S: PageStore>(store: &S, h: &MetaHeader) -> Result<Arc<Basis>, Corruption> {
    let dims = h.reduced_dims as usize;
    let key = (h.basis_checksum, dims);
    let cached = BASES.with_borrow_mut(|bases| {
        let at = bases.iter().position(|(c, d, _)| (*c, *d) == key)?;
        let entry = bases.remove(at);
        let basis = entry.2.clone();
        bases.push(entry);
        Some(basis)
    });
    if let Some(basis) = cached {
        return Ok(basis);
    }
    let basis = read_basis(store, h)?;
    BASES.with_borrow_mut(|bases| {
        if bases.len() == CACHED_BASES {
            bases.remove(0);
        }
        bases.push((key.0, key.1, basis.clone()));
    });
    Ok(basis)
}

/// Reads and verifies the basis pages an index's metapage names, without
/// the cache (`check` reads them every time).
pub fn read_basis<S: PageStore>(store: &S, h: &MetaHeader) -> Result<Arc<Basis>, Corruption> {
    let dims = h.reduced_dims as usize;
    let bad = |d: String| Corruption::new(h.basis_block, d);
    let pages = basis_pages(store.body_size(), dims);
    if h.basis_pages as usize != pages {
        return Err(Corruption::new(
            META_BLOCK,
            format!("{} basis pages, expected {pages}", h.basis_pages),
        ));
    }
    let total = basis_bytes(dims);
    let mut stream = Vec::with_capacity(total);
    for block in h.basis_block..h.basis_block.saturating_add(h.basis_pages) {
        let page = store
            .read_kind(block, PageKind::Basis)
            .ok_or_else(|| bad(format!("basis page {block} is not a basis page")))?;
        let want = (total - stream.len()).min(page.len());
        stream.extend_from_slice(&page[..want]);
    }
    if basis_checksum(&stream) != h.basis_checksum {
        return Err(bad("basis pages do not match their checksum".into()));
    }
    let (offsets, rows) = stream.split_at(4 * dims);
    let mut offset = vec![0f32; dims];
    read_f32s(offsets, &mut offset);
    let rows = rows
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]))
        .collect();
    Ok(Arc::new(Basis { offset, rows }))
}

/// Writes a basis into `basis_pages` new consecutive pages at the end;
/// returns the first block and the checksum.
pub fn write_basis<S: PageStore>(store: &S, basis: &Basis) -> (u32, u64) {
    let mut stream = Vec::with_capacity(basis_bytes(basis.dims()));
    basis
        .offset
        .iter()
        .for_each(|v| stream.extend_from_slice(&v.to_le_bytes()));
    basis
        .rows
        .iter()
        .for_each(|v| stream.extend_from_slice(&v.to_le_bytes()));
    let mut blocks = stream.chunks(store.body_size()).map(|chunk| {
        let (block, mut page) = store.extend(PageKind::Basis);
        page[..chunk.len()].copy_from_slice(chunk);
        block
    });
    let first = blocks.next().expect("a basis has values");
    for (i, block) in blocks.enumerate() {
        // The metapage records a range: the build (or rebuild) is the only writer.
        assert_eq!(
            block,
            first + 1 + i as u32,
            "basis pages must be consecutive"
        );
    }
    (first, basis_checksum(&stream))
}

/// The decoded metapage.
#[derive(Clone, Debug)]
pub struct Meta {
    pub header: MetaHeader,
    /// One root per tree (`header.trees` of them).
    pub roots: Vec<NodeRef>,
    pub space: TreeSpace,
}

impl Meta {
    pub fn reduced_dims(&self) -> usize {
        self.space.reduced_dims
    }

    pub fn read<S: PageStore>(store: &S) -> Result<Self, Corruption> {
        let bad = |d: String| Corruption::new(META_BLOCK, d);
        if store.nblocks() == 0 {
            return Err(bad("index has no metapage".into()));
        }
        if store.kind(META_BLOCK) != Some(PageKind::Meta) {
            return Err(bad("block 0 is not a metapage".into()));
        }
        let page = store.read(META_BLOCK);
        Self::parse(store, &page)
    }

    /// Decodes and validates a metapage body (held locked by the caller).
    pub fn parse<S: PageStore>(store: &S, page: &[u8]) -> Result<Self, Corruption> {
        let bad = |d: String| Corruption::new(META_BLOCK, d);
        let h = MetaHeader::read(page);
        if h.magic != META_MAGIC {
            return Err(bad(format!("bad magic {:#x}", h.magic)));
        }
        if h.version != FORMAT_VERSION {
            return Err(Corruption::old_format(h.version));
        }
        if h.dims as usize != DIMS {
            return Err(bad(format!("dims {} (expected {DIMS})", h.dims)));
        }
        let metric = Metric::from_u32(h.metric)
            .ok_or_else(|| bad(format!("unknown metric {}", h.metric)))?;
        let reduced = h.reduced_dims as usize;
        if !reduced.is_power_of_two() || !(MIN_REDUCED_DIMS..=MAX_REDUCED_DIMS).contains(&reduced) {
            return Err(bad(format!("reduced_dims {reduced} invalid")));
        }
        if h.trees == 0 || h.trees as usize > MAX_TREES {
            return Err(bad(format!("trees {} invalid", h.trees)));
        }
        let space = TreeSpace::new(metric, load_basis(store, &h)?);
        let capacity = leaf_capacity(store.body_size(), space.reduced_dims);
        if h.leaf_size == 0 || h.leaf_size as usize > capacity {
            return Err(bad(format!(
                "leaf_size {} (page holds {capacity})",
                h.leaf_size
            )));
        }
        if h.live_count > h.item_count || h.free_count > h.item_count - h.live_count {
            return Err(bad(format!(
                "counts of items {}, live {}, free {} do not add up",
                h.item_count, h.live_count, h.free_count
            )));
        }
        if (h.free_block == 0) != (h.free_count == 0) {
            return Err(bad("free list head and free count disagree".into()));
        }
        let roots = (0..h.trees as usize)
            .map(|t| NodeRef::read(&page[META_ROOTS_OFFSET + t * NodeRef::SIZE..]))
            .collect();
        Ok(Meta {
            header: h,
            roots,
            space,
        })
    }

    pub fn write_to(&self, body: &mut [u8]) {
        self.header.write(body);
        for (t, root) in self.roots.iter().enumerate() {
            root.write(&mut body[META_ROOTS_OFFSET + t * NodeRef::SIZE..]);
        }
    }
}
