//! Postgres pages under the index core's [`PageStore`] trait.
//!
//! Every index page is a standard Postgres page: the 24-byte header, a body
//! of [`BODY_SIZE`] bytes handed to the core, and a 16-byte special area
//! holding [`ANNOY_MAGIC`] and the page kind, so any page says what it is.
//! `pd_upper = pd_special`, and `pd_lower` just past the body's last
//! non-zero byte ([`fit_lower`], before every WAL record and bulk write): the
//! zeros of the body's unused end are the page's "hole", which GenericXLog
//! neither compares nor logs and full-page images leave out (a new leaf is
//! half empty, a grown one a quarter). Every byte past `pd_lower` is zero, so
//! the hole that WAL replay and GenericXLog zero holds nothing.
//!
//! Writes go through [`PageWrite`], an RAII guard over a GenericXLog record
//! ([`Logging::Generic`]):
//! * Guards of existing pages (`write`) that are held at the same time form
//!   one record, so a change that spans pages (the metapage and an item page,
//!   a record that continues on the next page) replays all or nothing. The
//!   record is finished, and the pages unlocked, when the last of those
//!   guards drops; a page stays locked until then even if its own guard has
//!   dropped.
//! * A new page (`allocate`) is its own record with a full-page image,
//!   finished when its guard drops. The core fills a new page and drops its
//!   guard before the page that links to it, so the new page reaches the WAL
//!   first, and a crash in between leaves at worst an unreachable page.
//!
//! Any guard dropping during a panic (a Postgres ERROR unwinding through
//! Rust) aborts its record: nothing of the change is applied. A bulk build
//! uses [`Logging::BulkBuild`]: pages are only marked dirty, and the build
//! WAL-logs the whole relation with `log_newpage_range` at the end.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};

use imgsim_forest::{PageKind, PageStore};
use pgrx::pg_sys;

/// Identifies an annoy index page in its special area.
pub const ANNOY_MAGIC: u32 = 0xA220_7E55;
const PAGE_HEADER_SIZE: usize = 24; // MAXALIGN(SizeOfPageHeaderData)
const SPECIAL_SIZE: usize = std::mem::size_of::<PageSpecial>();
/// Bytes of each page the index core may use.
pub const BODY_SIZE: usize = pg_sys::BLCKSZ as usize - PAGE_HEADER_SIZE - SPECIAL_SIZE;

/// The special area at the end of every page.
#[repr(C)]
#[derive(Clone, Copy)]
struct PageSpecial {
    magic: u32,
    kind: u8,
    reserved: [u8; 11],
}
const _: () = assert!(std::mem::size_of::<PageSpecial>() == 16);
const _: () = assert!(BODY_SIZE == 8152);

/// How page changes reach the WAL.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Logging {
    /// Each write guard is one GenericXLog record.
    Generic,
    /// No per-page WAL: the caller logs the relation after the bulk build.
    BulkBuild,
}

/// Relations whose recent buffers a backend keeps (its recently scanned indexes).
const RECENT_RELATIONS: usize = 4;
/// Blocks past this are read the usual way: it bounds the memory of
/// [`RecentBuffers`] to 4 bytes per block of the first 16 GB of an index.
const RECENT_BLOCKS: u32 = 1 << 21;

/// A relation fork's identity in buffer tags.
type RelationFork = (
    pg_sys::Oid,
    pg_sys::Oid,
    pg_sys::Oid,
    pg_sys::ForkNumber::Type,
);

/// The buffer that held each block of one relation fork when this backend
/// last read it (0: not known), indexed by block number.
///
/// A search reads some 500 pages, most of them read by the previous
/// queries too, and looking each up in the shared buffer mapping table (a
/// hash table as large as `shared_buffers`, under a partition lock) was a
/// seventh of a query's time. `ReadRecentBuffer` pins a remembered buffer
/// after checking, under its header lock, that it still holds that block of
/// that relation file, and answers no otherwise; so an entry is a hint that
/// can be stale but never wrong, and needs no invalidation.
type RecentBuffers = Vec<pg_sys::Buffer>;

thread_local! {
    /// Most recently used last. A store takes its relation's entry while it
    /// lives and gives it back when dropped.
    static RECENT: RefCell<Vec<(RelationFork, RecentBuffers)>> = const { RefCell::new(Vec::new()) };
}

/// An index relation (one fork of it) seen as a [`PageStore`].
pub struct PgStore {
    index: pg_sys::Relation,
    fork: pg_sys::ForkNumber::Type,
    logging: Logging,
    relation_fork: RelationFork,
    recent: RefCell<RecentBuffers>,
    group: RefCell<Option<WriteGroup>>,
    /// The block count, when no other backend can extend the relation while
    /// the store lives (see [`PgStore::with_fixed_size`]): read from the
    /// kernel once, then counted by our own `allocate`s. `None`: others may
    /// extend it, so every `nblocks` asks the kernel.
    fixed_nblocks: Option<Cell<u32>>,
    /// A block count seen earlier: blocks below it exist (an index shrinks
    /// only under a lock that keeps every other store of it away: the
    /// compaction's `truncate`), so range checks ask the kernel only past it.
    known_nblocks: Cell<u32>,
}

/// The GenericXLog record shared by the write guards of existing pages that
/// are held at the same time (see the module docs).
struct WriteGroup {
    /// `None` once aborted by a panic.
    state: Option<*mut pg_sys::GenericXLogState>,
    /// Locked buffers, released when the record is finished or aborted.
    buffers: Vec<pg_sys::Buffer>,
    /// GenericXLog's copies of their pages, whose `pd_lower` is fitted
    /// before the record is finished.
    pages: Vec<pg_sys::Page>,
    /// Guards of the group not yet dropped.
    open_guards: usize,
}

impl PgStore {
    /// # Safety
    /// `index` must be an open, locked annoy index relation that outlives the store.
    pub unsafe fn new(
        index: pg_sys::Relation,
        fork: pg_sys::ForkNumber::Type,
        logging: Logging,
    ) -> Self {
        // SAFETY: the relation is open (caller contract).
        let node = unsafe { (*index).rd_node };
        let relation_fork = (node.spcNode, node.dbNode, node.relNode, fork);
        let recent = RECENT.with_borrow_mut(|all| {
            all.iter()
                .position(|(key, _)| *key == relation_fork)
                .map(|at| all.remove(at).1)
                .unwrap_or_default()
        });
        PgStore {
            index,
            fork,
            logging,
            relation_fork,
            recent: RefCell::new(recent),
            group: RefCell::new(None),
            fixed_nblocks: None,
            known_nblocks: Cell::new(0),
        }
    }

    /// The store of an index no other backend can extend while it lives:
    /// the block count is read once instead of on every range check.
    ///
    /// # Safety
    /// As for [`PgStore::new`], and we hold a lock that keeps every other
    /// writer out of the index (ShareLock or stronger, not in recovery,
    /// where WAL replay extends relations regardless of locks).
    pub unsafe fn with_fixed_size(
        index: pg_sys::Relation,
        fork: pg_sys::ForkNumber::Type,
        logging: Logging,
    ) -> Self {
        // SAFETY: the relation is open (caller contract).
        let nblocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(index, fork) };
        // SAFETY: the caller's contract is new's.
        let mut store = unsafe { Self::new(index, fork, logging) };
        store.fixed_nblocks = Some(Cell::new(nblocks));
        store
    }

    /// Pins block `blk`. A page of the open write group is still locked by
    /// us, so locking it again would hang: that is a bug in the core.
    fn read_buffer(&self, blk: u32) -> pg_sys::Buffer {
        // SAFETY: the relation is open (constructor contract); Postgres
        // raises an ERROR for a block beyond the end.
        let buffer = unsafe {
            pg_sys::ReadBufferExtended(
                self.index,
                self.fork,
                blk,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            )
        };
        self.check_not_in_group(blk, buffer);
        buffer
    }

    /// The buffer this backend last found block `blk` in, or `InvalidBuffer`.
    fn remembered_buffer(&self, blk: u32) -> pg_sys::Buffer {
        self.recent
            .borrow()
            .get(blk as usize)
            .copied()
            .unwrap_or(pg_sys::InvalidBuffer as pg_sys::Buffer)
    }

    /// [`Self::read_buffer`] through the buffer this backend found the
    /// block in last time, when it still holds it (see [`RecentBuffers`]).
    fn read_recent_buffer(&self, blk: u32) -> pg_sys::Buffer {
        let remembered = self.remembered_buffer(blk);
        if remembered != pg_sys::InvalidBuffer as pg_sys::Buffer {
            // SAFETY: the relation is open; ReadRecentBuffer checks the
            // buffer's tag under its header lock before pinning it.
            let pinned = unsafe {
                pg_sys::ReadRecentBuffer((*self.index).rd_node, self.fork, blk, remembered)
            };
            if pinned {
                // ReadBufferExtended would count the read in the index's
                // pg_statio figures; ReadRecentBuffer does not.
                // SAFETY: pgstat_info is null or the index's live entry.
                unsafe {
                    if let Some(stats) = (*self.index).pgstat_info.as_mut() {
                        stats.t_counts.t_blocks_fetched += 1;
                        stats.t_counts.t_blocks_hit += 1;
                    }
                }
                self.check_not_in_group(blk, remembered);
                return remembered;
            }
        }
        let buffer = self.read_buffer(blk);
        if blk < RECENT_BLOCKS {
            let buffers = &mut *self.recent.borrow_mut();
            if buffers.len() <= blk as usize {
                buffers.resize(blk as usize + 1, pg_sys::InvalidBuffer as pg_sys::Buffer);
            }
            buffers[blk as usize] = buffer;
        }
        buffer
    }

    fn check_not_in_group(&self, blk: u32, buffer: pg_sys::Buffer) {
        if self
            .group
            .borrow()
            .as_ref()
            .is_some_and(|g| g.buffers.contains(&buffer))
        {
            // SAFETY: we pinned it just above.
            unsafe { pg_sys::ReleaseBuffer(buffer) };
            panic!("annoy: block {blk} accessed again within one change");
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let recent = std::mem::take(self.recent.get_mut());
        RECENT.with_borrow_mut(|all| {
            // Another store of the same relation (a self-join's second scan)
            // may have put its entry back first: keep one.
            all.retain(|(key, _)| *key != self.relation_fork);
            if all.len() == RECENT_RELATIONS {
                all.remove(0);
            }
            all.push((self.relation_fork, recent));
        });
    }
}

/// The body of a page: the bytes between its header and its special area.
///
/// # Safety
/// `page` points at BLCKSZ bytes that stay valid, and unchanged by others
/// (we hold at least a share lock), for `'a`.
unsafe fn page_body<'a>(page: pg_sys::Page) -> &'a [u8] {
    // SAFETY: a page is BLCKSZ bytes; the body lies between header and special.
    unsafe { std::slice::from_raw_parts(page.cast::<u8>().add(PAGE_HEADER_SIZE), BODY_SIZE) }
}

/// [`page_body`] for writing.
///
/// # Safety
/// As for [`page_body`], and nobody else reads or writes the page during
/// `'a` (we hold an exclusive lock, or the page is GenericXLog's private copy).
unsafe fn page_body_mut<'a>(page: pg_sys::Page) -> &'a mut [u8] {
    // SAFETY: as in page_body; exclusive by the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(page.cast::<u8>().add(PAGE_HEADER_SIZE), BODY_SIZE) }
}

/// A share-locked, pinned page. It derefs to the body, read-only: a share
/// lock allows no writes.
pub struct PageRead {
    buffer: pg_sys::Buffer,
    page: pg_sys::Page,
}

impl PageRead {
    /// The page's kind from its special area; `None` if it is not an annoy
    /// page (bad magic or unknown kind).
    pub fn kind(&self) -> Option<PageKind> {
        // SAFETY: the page is pinned and share-locked while the guard lives.
        unsafe { page_kind(self.page) }
    }
}

impl Deref for PageRead {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: pinned and share-locked until the guard drops, which the
        // borrow of `self` outlives.
        unsafe { page_body(self.page) }
    }
}

impl Drop for PageRead {
    fn drop(&mut self) {
        // SAFETY: we hold a pin and a share lock on this buffer.
        unsafe { pg_sys::UnlockReleaseBuffer(self.buffer) }
    }
}

/// How a [`PageWrite`] reaches the WAL.
enum WriteLog {
    /// Part of the store's write group.
    Group,
    /// A record of its own (a new page).
    Own(*mut pg_sys::GenericXLogState),
    /// Marked dirty only (bulk build).
    Unlogged,
}

/// An exclusively locked page being changed; see the module docs.
pub struct PageWrite<'s> {
    store: &'s PgStore,
    buffer: pg_sys::Buffer,
    log: WriteLog,
    /// The buffer's page (bulk build) or GenericXLog's copy of it, valid
    /// and ours alone until the guard drops.
    page: pg_sys::Page,
}

impl Deref for PageWrite<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: see `page`; the borrow of `self` ends before the drop.
        unsafe { page_body(self.page) }
    }
}

impl DerefMut for PageWrite<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: see `page`; `&mut self` makes this the only borrow.
        unsafe { page_body_mut(self.page) }
    }
}

impl Drop for PageWrite<'_> {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        // SAFETY: we hold a pin and an exclusive lock on this buffer (group
        // buffers: until the group ends), and each GenericXLog state was
        // started on its buffers and is finished or aborted exactly once.
        unsafe {
            match self.log {
                WriteLog::Unlogged => {
                    fit_lower(self.page);
                    pg_sys::MarkBufferDirty(self.buffer);
                    pg_sys::UnlockReleaseBuffer(self.buffer);
                }
                WriteLog::Own(state) => {
                    if panicking {
                        pg_sys::GenericXLogAbort(state);
                    } else {
                        fit_lower(self.page);
                        pg_sys::GenericXLogFinish(state);
                    }
                    pg_sys::UnlockReleaseBuffer(self.buffer);
                }
                WriteLog::Group => self.store.leave_group(panicking),
            }
        }
    }
}

impl PgStore {
    /// Lock `buffer` exclusively and open it for writing; `new_page` pages
    /// get initialised (header, special area) and a full-page image.
    fn begin_write(&self, buffer: pg_sys::Buffer, new_page: Option<PageKind>) -> PageWrite<'_> {
        // SAFETY: `buffer` is pinned by us.
        unsafe { pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32) };
        self.begin_locked_write(buffer, new_page)
    }

    /// [`begin_write`](Self::begin_write) of a buffer we have already
    /// locked exclusively.
    fn begin_locked_write(
        &self,
        buffer: pg_sys::Buffer,
        new_page: Option<PageKind>,
    ) -> PageWrite<'_> {
        // SAFETY: `buffer` is pinned and exclusively locked by us;
        // GenericXLog hands back a private copy of the page that it applies
        // on finish.
        unsafe {
            let (log, page) = match (self.logging, new_page) {
                (Logging::BulkBuild, _) => (WriteLog::Unlogged, pg_sys::BufferGetPage(buffer)),
                (Logging::Generic, Some(_)) => {
                    let state = pg_sys::GenericXLogStart(self.index);
                    let page = pg_sys::GenericXLogRegisterBuffer(
                        state,
                        buffer,
                        pg_sys::GENERIC_XLOG_FULL_IMAGE as i32,
                    );
                    (WriteLog::Own(state), page)
                }
                (Logging::Generic, None) => (WriteLog::Group, self.join_group(buffer)),
            };
            if let Some(kind) = new_page {
                init_page(page, kind);
            }
            PageWrite {
                store: self,
                buffer,
                log,
                page,
            }
        }
    }

    /// A page the free space map lists, locked and initialised as `kind`;
    /// `None` when it lists none. The map is a hint (not crash-safe, and
    /// shared): a listed page is taken only if it is still a free page and
    /// nobody holds it.
    fn reuse_free_page(&self, kind: PageKind) -> Option<(u32, PageWrite<'_>)> {
        loop {
            // SAFETY: the relation is open.
            let blk = unsafe { pg_sys::GetFreeIndexPage(self.index) };
            if blk == pg_sys::InvalidBlockNumber {
                return None;
            }
            // A stale entry may name the metapage, a block past the end or
            // a page this change already holds.
            if blk == 0 || !self.contains(blk) || self.in_group(blk) {
                continue;
            }
            let buffer = self.read_buffer(blk);
            // SAFETY: the buffer is pinned; its page is read only under
            // the exclusive lock, and unlocked and released if not taken.
            unsafe {
                if pg_sys::ConditionalLockBuffer(buffer) {
                    if page_kind(pg_sys::BufferGetPage(buffer)) == Some(PageKind::Free) {
                        if let Some(nblocks) = &self.fixed_nblocks {
                            nblocks.set(nblocks.get().max(blk + 1));
                        }
                        return Some((blk, self.begin_locked_write(buffer, Some(kind))));
                    }
                    pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_UNLOCK as i32);
                }
                pg_sys::ReleaseBuffer(buffer);
            }
        }
    }

    /// Whether the open write group holds block `blk`.
    fn in_group(&self, blk: u32) -> bool {
        self.group.borrow().as_ref().is_some_and(|group| {
            group
                .buffers
                .iter()
                // SAFETY: group buffers are pinned by us.
                .any(|&buffer| unsafe { pg_sys::BufferGetBlockNumber(buffer) } == blk)
        })
    }

    /// Registers a locked buffer in the write group, starting the group's
    /// record if none is open; returns the page copy to change.
    ///
    /// # Safety
    /// `buffer` is pinned and exclusively locked by us.
    unsafe fn join_group(&self, buffer: pg_sys::Buffer) -> pg_sys::Page {
        let mut group = self.group.borrow_mut();
        let group = group.get_or_insert_with(|| WriteGroup {
            // SAFETY: the relation is open.
            state: Some(unsafe { pg_sys::GenericXLogStart(self.index) }),
            buffers: Vec::new(),
            pages: Vec::new(),
            open_guards: 0,
        });
        let state = group.state.expect("write group aborted while in use");
        // GenericXLog takes at most MAX_GENERIC_XLOG_PAGES; the core's
        // changes span at most three existing pages.
        assert!(
            group.buffers.len() < pg_sys::MAX_GENERIC_XLOG_PAGES as usize,
            "annoy: one change spans more pages than a WAL record can hold"
        );
        group.buffers.push(buffer);
        group.open_guards += 1;
        // SAFETY: the state is open; the buffer is locked (caller contract).
        let page = unsafe { pg_sys::GenericXLogRegisterBuffer(state, buffer, 0) };
        group.pages.push(page);
        page
    }

    /// A group guard dropped: finish (or on panic abort) the record when it
    /// was the last one, then unlock and release the group's buffers.
    fn leave_group(&self, panicking: bool) {
        let mut slot = self.group.borrow_mut();
        let group = slot.as_mut().expect("group guard without a group");
        group.open_guards -= 1;
        let last = group.open_guards == 0;
        if !panicking && !last {
            return;
        }
        // SAFETY: the state was started by join_group and is ended once
        // (`take`); the buffers are pinned and locked by us.
        unsafe {
            if let Some(state) = group.state.take() {
                if panicking {
                    pg_sys::GenericXLogAbort(state);
                } else {
                    for &page in &group.pages {
                        fit_lower(page);
                    }
                    pg_sys::GenericXLogFinish(state);
                }
                group.pages.clear();
                for buffer in group.buffers.drain(..) {
                    pg_sys::UnlockReleaseBuffer(buffer);
                }
            }
        }
        if last {
            *slot = None;
        }
    }
}

/// The kind a page's special area records; `None` if it is not an annoy
/// page (bad magic or unknown kind).
///
/// # Safety
/// `page` must point at BLCKSZ readable bytes.
unsafe fn page_kind(page: pg_sys::Page) -> Option<PageKind> {
    // SAFETY: the special area is the last SPECIAL_SIZE of the BLCKSZ bytes.
    let special = unsafe { special_area(page).read_unaligned() };
    (special.magic == ANNOY_MAGIC)
        .then(|| PageKind::from_u8(special.kind))
        .flatten()
}

/// The special area of a page of BLCKSZ bytes.
///
/// # Safety
/// `page` must point at BLCKSZ bytes.
unsafe fn special_area(page: pg_sys::Page) -> *mut PageSpecial {
    unsafe {
        page.cast::<u8>()
            .add(pg_sys::BLCKSZ as usize - SPECIAL_SIZE)
            .cast::<PageSpecial>()
    }
}

/// Changes the kind a page's special area records.
///
/// # Safety
/// `page` must point at BLCKSZ writable bytes of an annoy page.
unsafe fn set_page_kind(page: pg_sys::Page, kind: PageKind) {
    unsafe {
        let special = special_area(page);
        let mut value = special.read_unaligned();
        value.kind = kind as u8;
        special.write_unaligned(value);
    }
}

/// Sets `pd_lower` just past the last non-zero byte of the body (see the
/// module docs), so that only the body's used part is compared and logged.
///
/// # Safety
/// `page` must point at BLCKSZ writable bytes of an annoy page that nobody
/// else reads or writes meanwhile.
unsafe fn fit_lower(page: pg_sys::Page) {
    unsafe {
        let used = used_len(page_body(page));
        (*page.cast::<pg_sys::PageHeaderData>()).pd_lower = (PAGE_HEADER_SIZE + used) as u16;
    }
}

/// Bytes of `body` up to and including its last non-zero byte.
fn used_len(body: &[u8]) -> usize {
    let last_in = |bytes: &[u8]| bytes.iter().rposition(|&b| b != 0);
    let (words, rest) = body.as_chunks::<8>();
    if let Some(last) = last_in(rest) {
        return words.len() * 8 + last + 1;
    }
    // Word by word from the end: the unused end is half of a new leaf.
    words
        .iter()
        .rposition(|w| u64::from_ne_bytes(*w) != 0)
        .map_or(0, |k| k * 8 + last_in(&words[k]).map_or(0, |b| b + 1))
}

/// Format an empty page of `kind`: header, zeroed body, special area.
///
/// # Safety
/// `page` must point at BLCKSZ writable bytes.
unsafe fn init_page(page: pg_sys::Page, kind: PageKind) {
    unsafe {
        pg_sys::PageInit(page, pg_sys::BLCKSZ as usize, SPECIAL_SIZE);
        let header = page.cast::<pg_sys::PageHeaderData>();
        (*header).pd_upper = (*header).pd_special;
        let special = PageSpecial {
            magic: ANNOY_MAGIC,
            kind: kind as u8,
            reserved: [0; 11],
        };
        special_area(page).write_unaligned(special);
    }
}

impl PageStore for PgStore {
    type Read<'a> = PageRead;
    type Write<'a> = PageWrite<'a>;

    fn body_size(&self) -> usize {
        BODY_SIZE
    }

    fn nblocks(&self) -> u32 {
        match &self.fixed_nblocks {
            Some(nblocks) => nblocks.get(),
            // SAFETY: the relation is open.
            None => unsafe { pg_sys::RelationGetNumberOfBlocksInFork(self.index, self.fork) },
        }
    }

    fn kind(&self, blk: u32) -> Option<PageKind> {
        self.read(blk).kind()
    }

    fn contains(&self, blk: u32) -> bool {
        if blk < self.known_nblocks.get() {
            return true;
        }
        self.known_nblocks.set(self.nblocks());
        blk < self.known_nblocks.get()
    }

    fn read_kind(&self, blk: u32, kind: PageKind) -> Option<PageRead> {
        if !kind.can_be_at(blk) || !self.contains(blk) {
            return None;
        }
        let page = self.read(blk);
        (page.kind() == Some(kind)).then_some(page)
    }

    /// Prefetches, for a block this backend has found in a shared buffer
    /// before, the buffer's descriptor (`ReadRecentBuffer` locks its
    /// header), the page's special area (the kind check) and the body line
    /// at `offset`. Only addresses are computed: a stale or evicted buffer
    /// warms an unrelated page, which costs nothing but the hint.
    fn prefetch(&self, blk: u32, offset: usize) {
        let buffer = self.remembered_buffer(blk);
        // 0 is no buffer; local buffers (temporary indexes) are negative.
        if buffer <= 0 {
            return;
        }
        let id = (buffer - 1) as usize;
        let page_size = pg_sys::BLCKSZ as usize;
        // SAFETY: reading the two array bases, which Postgres sets up at
        // start and never moves; the addresses are only computed
        // (wrapping) and handed to a prefetch, never dereferenced.
        let (page, descriptor) = unsafe {
            (
                pg_sys::BufferBlocks
                    .cast::<u8>()
                    .wrapping_add(id * page_size),
                pg_sys::BufferDescriptors.wrapping_add(id).cast::<u8>(),
            )
        };
        imgsim_kernels::prefetch(descriptor);
        imgsim_kernels::prefetch(page.wrapping_add(page_size - SPECIAL_SIZE));
        imgsim_kernels::prefetch(page.wrapping_add(PAGE_HEADER_SIZE + offset.min(BODY_SIZE - 1)));
    }

    fn read(&self, blk: u32) -> PageRead {
        let buffer = self.read_recent_buffer(blk);
        // SAFETY: the buffer is pinned; the share lock is held until drop.
        unsafe {
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
            PageRead {
                buffer,
                page: pg_sys::BufferGetPage(buffer),
            }
        }
    }

    fn write(&self, blk: u32) -> PageWrite<'_> {
        self.begin_write(self.read_buffer(blk), None)
    }

    fn try_write(&self, blk: u32) -> Option<PageWrite<'_>> {
        let buffer = self.read_buffer(blk);
        // SAFETY: the buffer is pinned by us; released if not locked.
        unsafe {
            if pg_sys::ConditionalLockBuffer(buffer) {
                Some(self.begin_locked_write(buffer, None))
            } else {
                pg_sys::ReleaseBuffer(buffer);
                None
            }
        }
    }

    fn allocate(&self, kind: PageKind) -> (u32, PageWrite<'_>) {
        match self.reuse_free_page(kind) {
            Some(reused) => reused,
            None => self.extend(kind),
        }
    }

    fn extend(&self, kind: PageKind) -> (u32, PageWrite<'_>) {
        // The extension lock keeps two backends from adding the same block.
        // SAFETY: the relation is open; P_NEW extends it by one page.
        let buffer = unsafe {
            pg_sys::LockRelationForExtension(self.index, pg_sys::ExclusiveLock as i32);
            let buffer = pg_sys::ReadBufferExtended(
                self.index,
                self.fork,
                pg_sys::InvalidBlockNumber, // P_NEW
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            );
            pg_sys::UnlockRelationForExtension(self.index, pg_sys::ExclusiveLock as i32);
            buffer
        };
        // SAFETY: the buffer is pinned.
        let blk = unsafe { pg_sys::BufferGetBlockNumber(buffer) };
        if let Some(nblocks) = &self.fixed_nblocks {
            nblocks.set(nblocks.get().max(blk + 1));
        }
        (blk, self.begin_write(buffer, Some(kind)))
    }

    /// Takes a page that `free` gave back (the compaction knows which are
    /// free: it holds the index exclusively), and tells the free space map.
    fn allocate_at(&self, blk: u32, kind: PageKind) -> PageWrite<'_> {
        // SAFETY: the relation is open.
        unsafe { pg_sys::RecordUsedIndexPage(self.index, blk) };
        let buffer = self.read_buffer(blk);
        // SAFETY: the buffer is pinned; its page is read only under the
        // exclusive lock, which begin_locked_write keeps.
        unsafe {
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
            if page_kind(pg_sys::BufferGetPage(buffer)) != Some(PageKind::Free) {
                pg_sys::UnlockReleaseBuffer(buffer);
                panic!("annoy: block {blk} is not a free page");
            }
            self.begin_locked_write(buffer, Some(kind))
        }
    }

    /// Marks the page free (its special area's kind, one small WAL record)
    /// and lists it in the free space map for `allocate`.
    fn free(&self, blk: u32) {
        assert!(blk != 0, "annoy: the metapage is never freed");
        let buffer = self.read_buffer(blk);
        // SAFETY: the buffer is pinned; it is changed under its exclusive
        // lock, through GenericXLog unless a bulk build logs it later.
        unsafe {
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
            match self.logging {
                Logging::Generic => {
                    let state = pg_sys::GenericXLogStart(self.index);
                    let page = pg_sys::GenericXLogRegisterBuffer(state, buffer, 0);
                    set_page_kind(page, PageKind::Free);
                    fit_lower(page);
                    pg_sys::GenericXLogFinish(state);
                }
                Logging::BulkBuild => {
                    set_page_kind(pg_sys::BufferGetPage(buffer), PageKind::Free);
                    fit_lower(pg_sys::BufferGetPage(buffer));
                    pg_sys::MarkBufferDirty(buffer);
                }
            }
            pg_sys::UnlockReleaseBuffer(buffer);
            pg_sys::RecordFreeIndexPage(self.index, blk);
        }
    }

    /// `RelationTruncate`: WAL-logged (a standby or crash recovery cuts the
    /// relation at the same point), and it cuts the free space map too. The
    /// caller holds the index exclusively, so no other backend has it open;
    /// they drop their cached sizes on the invalidation this sends.
    fn truncate(&self, nblocks: u32) {
        // SAFETY: the relation is open, and the pages past `nblocks` free.
        unsafe { pg_sys::RelationTruncate(self.index, nblocks) };
        if let Some(fixed) = &self.fixed_nblocks {
            fixed.set(nblocks);
        }
        self.known_nblocks
            .set(self.known_nblocks.get().min(nblocks));
        self.recent.borrow_mut().truncate(nblocks as usize);
    }
}

/// WAL-log every page of `fork` after a bulk build, if the relation needs WAL.
///
/// # Safety
/// `index` must be an open index relation that we hold exclusively.
pub unsafe fn log_bulk_build(index: pg_sys::Relation, fork: pg_sys::ForkNumber::Type) {
    unsafe {
        let nblocks = pg_sys::RelationGetNumberOfBlocksInFork(index, fork);
        if fork == pg_sys::ForkNumber::INIT_FORKNUM || relation_needs_wal(index) {
            pg_sys::log_newpage_range(index, fork, 0, nblocks, true);
        }
        if fork == pg_sys::ForkNumber::INIT_FORKNUM {
            // The init fork is copied to the main fork at recovery; it must
            // be on disk before commit.
            pg_sys::smgrimmedsync(pg_sys::RelationGetSmgr(index), fork);
        }
    }
}

/// `RelationNeedsWAL()` from utils/rel.h (a macro, so not in the bindings).
unsafe fn relation_needs_wal(rel: pg_sys::Relation) -> bool {
    const INVALID_SUBTRANSACTION_ID: pg_sys::SubTransactionId = 0;
    unsafe {
        let permanent = (*(*rel).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_PERMANENT as i8;
        let wal_needed = pg_sys::wal_level >= pg_sys::WalLevel::WAL_LEVEL_REPLICA as i32;
        permanent
            && (wal_needed
                || ((*rel).rd_createSubid == INVALID_SUBTRANSACTION_ID
                    && (*rel).rd_firstRelfilenodeSubid == INVALID_SUBTRANSACTION_ID))
    }
}
