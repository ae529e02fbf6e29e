//! The page store the index lives in, and an in-memory implementation.

use std::cell::{Cell, OnceCell, Ref, RefCell, RefMut};
use std::ops::{Deref, DerefMut};

/// What a page holds. The glue records it (with a magic number) in the
/// page's special area when the page is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageKind {
    Meta = 1,
    Item = 2,
    Split = 3,
    Leaf = 4,
    Basis = 5,
    /// Given back by [`PageStore::free`]; `allocate` may hand it out again.
    Free = 6,
}

impl PageKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => PageKind::Meta,
            2 => PageKind::Item,
            3 => PageKind::Split,
            4 => PageKind::Leaf,
            5 => PageKind::Basis,
            6 => PageKind::Free,
            _ => return None,
        })
    }

    /// Whether a page of this kind may be at block `blk`. Block 0 is the
    /// metapage whatever its special area says: a pointer at it is refused
    /// for every other kind even when that byte is damaged, so no writer
    /// can take the metapage for a leaf or an item page.
    pub fn can_be_at(self, blk: u32) -> bool {
        blk != 0 || self == PageKind::Meta
    }
}

/// Fixed-size pages addressed by block number; block 0 is the metapage.
///
/// Guards hold buffer locks: a read guard a share lock, a write guard an
/// exclusive lock (the change is WAL-logged when it drops).
///
/// Lock ordering, which every caller in this crate follows:
/// * Searches and `check` hold at most one guard at a time: they copy what
///   they need out of a page and drop the guard before reading the next.
/// * Build runs with no concurrent access; it still holds at most one
///   existing page plus the page it has just allocated.
/// * A writer that must hold two guards takes them in this order: metapage
///   first, then an existing page, then pages it allocates. Newly allocated
///   pages are unreachable by other backends until a reachable page is made
///   to point at them, so locking them last cannot deadlock.
pub trait PageStore {
    type Read<'a>: Deref<Target = [u8]>
    where
        Self: 'a;
    type Write<'a>: DerefMut<Target = [u8]>
    where
        Self: 'a;

    /// Usable bytes of a page body (8152 in Postgres).
    fn body_size(&self) -> usize;
    /// Number of pages, including the metapage.
    fn nblocks(&self) -> u32;
    /// The page's kind from its special area; `None` if it is not a page of
    /// this index (bad magic or unknown kind).
    fn kind(&self, blk: u32) -> Option<PageKind>;
    /// Shared access to a body. `blk < nblocks()` is checked by callers.
    fn read(&self, blk: u32) -> Self::Read<'_>;
    /// A hint that the bytes at `offset` of block `blk`'s body will be read
    /// soon: a store may start moving them (and what it reads to get at the
    /// page) into the CPU's caches. Any block and offset are allowed, and
    /// nothing but speed depends on it.
    fn prefetch(&self, _blk: u32, _offset: usize) {}
    /// Whether block `blk` exists. Relations only grow while anyone else
    /// uses them (only [`truncate`](Self::truncate), under a lock that keeps
    /// every other user out, shrinks them), so a store may answer from a
    /// cached size and ask again only past it.
    fn contains(&self, blk: u32) -> bool {
        blk < self.nblocks()
    }
    /// Whether block `blk` exists, may hold `kind` ([`PageKind::can_be_at`])
    /// and does: the check every page number read from another page needs.
    fn is_page_of(&self, blk: u32, kind: PageKind) -> bool {
        kind.can_be_at(blk) && self.contains(blk) && self.kind(blk) == Some(kind)
    }
    /// Shared access to block `blk` if [`is_page_of`](Self::is_page_of)
    /// holds, with one pin and lock of the page (the hot paths read pages
    /// whose numbers come from other pages, so each must be checked).
    fn read_kind(&self, blk: u32, kind: PageKind) -> Option<Self::Read<'_>> {
        self.is_page_of(blk, kind).then(|| self.read(blk))
    }
    /// Exclusive access to a body.
    fn write(&self, blk: u32) -> Self::Write<'_>;
    /// Exclusive access to a body if no one else holds the page now
    /// (never waits: for a page locked out of the usual order).
    fn try_write(&self, blk: u32) -> Option<Self::Write<'_>>;
    /// A zeroed page of the given kind, returned locked exclusively: a page
    /// given back by [`free`](Self::free) if there is one, else a new one
    /// at the end.
    fn allocate(&self, kind: PageKind) -> (u32, Self::Write<'_>);
    /// Appends a zeroed page of the given kind (never a freed one: runs of
    /// pages that must be consecutive, the basis).
    fn extend(&self, kind: PageKind) -> (u32, Self::Write<'_>);
    /// Takes the free page `blk` (one [`free`](Self::free) gave back),
    /// zeroed as `kind` and locked exclusively: for a caller that chooses
    /// where its pages go (the compaction, lowest blocks first).
    fn allocate_at(&self, blk: u32, kind: PageKind) -> Self::Write<'_>;
    /// Gives back a page nothing points at any more, and that no other
    /// backend can still be reading (the caller's lock guarantees it).
    fn free(&self, blk: u32);
    /// Cuts the store to its first `nblocks` pages, every page past them
    /// free. Only with no other user of the index (the caller's lock).
    fn truncate(&self, nblocks: u32);
}

/// A shared store is a store: searches own theirs, tests lend one.
impl<S: PageStore + ?Sized> PageStore for &S {
    type Read<'a>
        = S::Read<'a>
    where
        Self: 'a;
    type Write<'a>
        = S::Write<'a>
    where
        Self: 'a;

    fn body_size(&self) -> usize {
        (**self).body_size()
    }
    fn nblocks(&self) -> u32 {
        (**self).nblocks()
    }
    fn kind(&self, blk: u32) -> Option<PageKind> {
        (**self).kind(blk)
    }
    fn read(&self, blk: u32) -> Self::Read<'_> {
        (**self).read(blk)
    }
    fn prefetch(&self, blk: u32, offset: usize) {
        (**self).prefetch(blk, offset)
    }
    fn contains(&self, blk: u32) -> bool {
        (**self).contains(blk)
    }
    fn is_page_of(&self, blk: u32, kind: PageKind) -> bool {
        (**self).is_page_of(blk, kind)
    }
    fn read_kind(&self, blk: u32, kind: PageKind) -> Option<Self::Read<'_>> {
        (**self).read_kind(blk, kind)
    }
    fn write(&self, blk: u32) -> Self::Write<'_> {
        (**self).write(blk)
    }
    fn try_write(&self, blk: u32) -> Option<Self::Write<'_>> {
        (**self).try_write(blk)
    }
    fn allocate(&self, kind: PageKind) -> (u32, Self::Write<'_>) {
        (**self).allocate(kind)
    }
    fn extend(&self, kind: PageKind) -> (u32, Self::Write<'_>) {
        (**self).extend(kind)
    }
    fn allocate_at(&self, blk: u32, kind: PageKind) -> Self::Write<'_> {
        (**self).allocate_at(blk, kind)
    }
    fn free(&self, blk: u32) {
        (**self).free(blk)
    }
    fn truncate(&self, nblocks: u32) {
        (**self).truncate(nblocks)
    }
}

const CHUNK_PAGES: usize = 4096;
const MAX_CHUNKS: usize = 4096;

struct MemPage {
    kind: Cell<u8>,
    body: RefCell<Box<[u8]>>,
}

/// `CHUNK_PAGES` pages, each set once when allocated.
type Chunk = Box<[OnceCell<MemPage>]>;

/// In-memory page store for tests and benchmarks.
///
/// Pages never move once allocated (two-level table of `OnceCell`s), so
/// guards can borrow them while new pages are appended; a page cut off by
/// `truncate` keeps its cell and is zeroed when the store grows again. A read and a write of
/// the same page at once (a self-deadlock in Postgres) panics.
pub struct MemStore {
    body_size: usize,
    nblocks: Cell<u32>,
    chunks: Box<[OnceCell<Chunk>]>,
    /// Freed pages, handed out again by `allocate` (last freed first).
    free_pages: RefCell<Vec<u32>>,
}

impl MemStore {
    /// A store whose pages have bodies of `body_size` bytes.
    pub fn new(body_size: usize) -> Self {
        MemStore {
            body_size,
            nblocks: Cell::new(0),
            chunks: (0..MAX_CHUNKS).map(|_| OnceCell::new()).collect(),
            free_pages: RefCell::new(Vec::new()),
        }
    }

    /// A store with Postgres' body size (8192-byte pages).
    pub fn postgres_sized() -> Self {
        Self::new(8152)
    }

    fn page(&self, blk: u32) -> &MemPage {
        assert!(blk < self.nblocks.get(), "block {blk} out of range");
        let (c, i) = (blk as usize / CHUNK_PAGES, blk as usize % CHUNK_PAGES);
        self.chunks[c]
            .get()
            .and_then(|chunk| chunk[i].get())
            .expect("allocated page present")
    }

    /// Overwrites a page's recorded kind (tests of `check`).
    pub fn set_kind(&self, blk: u32, kind: u8) {
        self.page(blk).kind.set(kind);
    }

    /// Size as a Postgres relation: 8192 bytes per page.
    pub fn size_bytes(&self) -> u64 {
        self.nblocks.get() as u64 * 8192
    }
}

impl PageStore for MemStore {
    type Read<'a> = Ref<'a, [u8]>;
    type Write<'a> = RefMut<'a, [u8]>;

    fn body_size(&self) -> usize {
        self.body_size
    }

    fn nblocks(&self) -> u32 {
        self.nblocks.get()
    }

    fn kind(&self, blk: u32) -> Option<PageKind> {
        PageKind::from_u8(self.page(blk).kind.get())
    }

    fn read(&self, blk: u32) -> Ref<'_, [u8]> {
        let body = self.page(blk).body.try_borrow();
        Ref::map(body.expect("page already locked exclusively"), |b| &**b)
    }

    fn prefetch(&self, blk: u32, offset: usize) {
        if blk < self.nblocks.get() {
            if let Ok(body) = self.page(blk).body.try_borrow() {
                imgsim_kernels::prefetch(body.as_ptr().wrapping_add(offset));
            }
        }
    }

    fn write(&self, blk: u32) -> RefMut<'_, [u8]> {
        self.try_write(blk).expect("page already locked")
    }

    fn try_write(&self, blk: u32) -> Option<RefMut<'_, [u8]>> {
        let body = self.page(blk).body.try_borrow_mut().ok()?;
        Some(RefMut::map(body, |b| &mut **b))
    }

    fn allocate(&self, kind: PageKind) -> (u32, RefMut<'_, [u8]>) {
        let reused = self.free_pages.borrow_mut().pop();
        let Some(blk) = reused else {
            return self.extend(kind);
        };
        let page = self.page(blk);
        page.kind.set(kind as u8);
        let mut body = self.write(blk);
        body.fill(0);
        (blk, body)
    }

    fn allocate_at(&self, blk: u32, kind: PageKind) -> RefMut<'_, [u8]> {
        let mut free_pages = self.free_pages.borrow_mut();
        let at = free_pages.iter().position(|&b| b == blk);
        let at = at.unwrap_or_else(|| panic!("block {blk} is not free"));
        free_pages.swap_remove(at);
        self.page(blk).kind.set(kind as u8);
        let mut body = self.write(blk);
        body.fill(0);
        body
    }

    fn free(&self, blk: u32) {
        assert!(blk != 0, "the metapage is never freed");
        self.page(blk).kind.set(PageKind::Free as u8);
        self.free_pages.borrow_mut().push(blk);
    }

    fn truncate(&self, nblocks: u32) {
        assert!(nblocks >= 1, "the metapage stays");
        for blk in nblocks..self.nblocks.get() {
            assert_eq!(self.kind(blk), Some(PageKind::Free), "block {blk} in use");
        }
        self.free_pages.borrow_mut().retain(|&b| b < nblocks);
        self.nblocks.set(nblocks.min(self.nblocks.get()));
    }

    fn extend(&self, kind: PageKind) -> (u32, RefMut<'_, [u8]>) {
        let blk = self.nblocks.get();
        let (c, i) = (blk as usize / CHUNK_PAGES, blk as usize % CHUNK_PAGES);
        assert!(c < MAX_CHUNKS, "MemStore full");
        let chunk =
            self.chunks[c].get_or_init(|| (0..CHUNK_PAGES).map(|_| OnceCell::new()).collect());
        self.nblocks.set(blk + 1);
        // A page cut off by `truncate` is set already: it comes back zeroed.
        let page = chunk[i].get_or_init(|| MemPage {
            kind: Cell::new(kind as u8),
            body: RefCell::new(vec![0u8; self.body_size].into_boxed_slice()),
        });
        page.kind.set(kind as u8);
        let mut body = self.write(blk);
        body.fill(0);
        (blk, body)
    }
}
