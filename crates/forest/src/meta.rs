//! Reading, validating and writing the metapage.

use crate::format::*;
use crate::space::TreeSpace;
use crate::store::{PageKind, PageStore};
use crate::{Corruption, Metric};

pub const META_BLOCK: u32 = 0;

/// Rotation rounds used by new indexes (recorded in the metapage).
pub const ROTATION_ROUNDS: u32 = 2;

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
            return Err(bad(format!(
                "on-disk format version {}, this imgsim reads version {FORMAT_VERSION} \
                 (the index was built by another imgsim version)",
                h.version
            )));
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
        if h.rotation_rounds == 0 || h.rotation_rounds > 8 {
            return Err(bad(format!(
                "rotation_rounds {} invalid",
                h.rotation_rounds
            )));
        }
        if h.trees == 0 || h.trees as usize > MAX_TREES {
            return Err(bad(format!("trees {} invalid", h.trees)));
        }
        let mut space = TreeSpace::new(metric, reduced, h.seed, h.rotation_rounds as usize);
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
        read_f32s(&page[META_CENTER_OFFSET..], &mut space.center);
        if space.center.iter().any(|c| !c.is_finite()) {
            return Err(bad("centre not finite".into()));
        }
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
        write_f32s(&self.space.center, &mut body[META_CENTER_OFFSET..]);
    }
}
