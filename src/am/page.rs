//! Postgres pages under the index core's [`PageStore`] trait.
//!
//! Every index page is a standard Postgres page: the 24-byte header, a body
//! of [`BODY_SIZE`] bytes handed to the core, and a 16-byte special area
//! holding [`ANNOY_MAGIC`] and the page kind, so any page says what it is.
//! `pd_lower = pd_upper = pd_special`: the whole body is data (no hole), so
//! GenericXLog's delta and full-page images cover all of it.
//!
//! Writes go through [`PageWrite`], an RAII guard: in [`Logging::Generic`]
//! mode it starts a GenericXLog record on the buffer, finishes it when the
//! guard drops, and aborts it if the guard drops during a panic (a Postgres
//! ERROR unwinding through Rust). A bulk build uses [`Logging::BulkBuild`]:
//! pages are only marked dirty, and the build WAL-logs the whole relation
//! with `log_newpage_range` at the end.

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

/// An index relation (one fork of it) seen as a [`PageStore`].
pub struct PgStore {
    index: pg_sys::Relation,
    fork: pg_sys::ForkNumber::Type,
    logging: Logging,
}

impl PgStore {
    /// # Safety
    /// `index` must be an open, locked annoy index relation that outlives the store.
    pub unsafe fn new(index: pg_sys::Relation, fork: pg_sys::ForkNumber::Type, logging: Logging) -> Self {
        PgStore { index, fork, logging }
    }

    fn read_buffer(&self, blk: u32) -> pg_sys::Buffer {
        // SAFETY: the relation is open (constructor contract); Postgres
        // raises an ERROR for a block beyond the end.
        unsafe {
            pg_sys::ReadBufferExtended(
                self.index,
                self.fork,
                blk,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                std::ptr::null_mut(),
            )
        }
    }
}

fn page_body<'a>(page: pg_sys::Page) -> &'a mut [u8] {
    // SAFETY: a page is BLCKSZ bytes; the body lies between header and special.
    unsafe { std::slice::from_raw_parts_mut(page.cast::<u8>().add(PAGE_HEADER_SIZE), BODY_SIZE) }
}

fn page_special(page: pg_sys::Page) -> PageSpecial {
    // SAFETY: every page of an annoy index has its special area at the end.
    unsafe {
        page.cast::<u8>()
            .add(pg_sys::BLCKSZ as usize - SPECIAL_SIZE)
            .cast::<PageSpecial>()
            .read_unaligned()
    }
}

/// A share-locked, pinned page.
pub struct PageRead {
    buffer: pg_sys::Buffer,
    page: pg_sys::Page,
}

impl Deref for PageRead {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        page_body(self.page)
    }
}

impl Drop for PageRead {
    fn drop(&mut self) {
        // SAFETY: we hold a pin and a share lock on this buffer.
        unsafe { pg_sys::UnlockReleaseBuffer(self.buffer) }
    }
}

/// An exclusively locked page being changed; see the module docs.
pub struct PageWrite {
    buffer: pg_sys::Buffer,
    xlog: Option<*mut pg_sys::GenericXLogState>,
    body: &'static mut [u8],
}

impl Deref for PageWrite {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.body
    }
}

impl DerefMut for PageWrite {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.body
    }
}

impl Drop for PageWrite {
    fn drop(&mut self) {
        // SAFETY: we hold a pin and an exclusive lock on this buffer, and the
        // GenericXLog state (if any) was started on it.
        unsafe {
            match self.xlog {
                Some(state) if std::thread::panicking() => pg_sys::GenericXLogAbort(state),
                Some(state) => {
                    pg_sys::GenericXLogFinish(state);
                }
                None => pg_sys::MarkBufferDirty(self.buffer),
            }
            pg_sys::UnlockReleaseBuffer(self.buffer);
        }
    }
}

impl PgStore {
    /// Lock `buffer` exclusively and open it for writing; `new_page` pages
    /// get initialised (header, special area) and a full-page image.
    fn begin_write(&self, buffer: pg_sys::Buffer, new_page: Option<PageKind>) -> PageWrite {
        // SAFETY: `buffer` is pinned by us; GenericXLog hands back a
        // private copy of the page that it applies on finish.
        unsafe {
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32);
            let (xlog, page) = match self.logging {
                Logging::Generic => {
                    let state = pg_sys::GenericXLogStart(self.index);
                    let flags = if new_page.is_some() { pg_sys::GENERIC_XLOG_FULL_IMAGE as i32 } else { 0 };
                    let page = pg_sys::GenericXLogRegisterBuffer(state, buffer, flags);
                    (Some(state), page)
                }
                Logging::BulkBuild => (None, pg_sys::BufferGetPage(buffer)),
            };
            if let Some(kind) = new_page {
                init_page(page, kind);
            }
            PageWrite { buffer, xlog, body: page_body(page) }
        }
    }
}

/// Format an empty page of `kind`: header, zeroed body, special area.
///
/// # Safety
/// `page` must point at BLCKSZ writable bytes.
unsafe fn init_page(page: pg_sys::Page, kind: PageKind) {
    unsafe {
        pg_sys::PageInit(page, pg_sys::BLCKSZ as usize, SPECIAL_SIZE);
        let header = page.cast::<pg_sys::PageHeaderData>();
        (*header).pd_lower = (*header).pd_special;
        (*header).pd_upper = (*header).pd_special;
        let special = PageSpecial { magic: ANNOY_MAGIC, kind: kind as u8, reserved: [0; 11] };
        page.cast::<u8>()
            .add(pg_sys::BLCKSZ as usize - SPECIAL_SIZE)
            .cast::<PageSpecial>()
            .write_unaligned(special);
    }
}

impl PageStore for PgStore {
    type Read<'a> = PageRead;
    type Write<'a> = PageWrite;

    fn body_size(&self) -> usize {
        BODY_SIZE
    }

    fn nblocks(&self) -> u32 {
        // SAFETY: the relation is open.
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(self.index, self.fork) }
    }

    fn kind(&self, blk: u32) -> Option<PageKind> {
        let special = page_special(self.read(blk).page);
        (special.magic == ANNOY_MAGIC).then(|| PageKind::from_u8(special.kind)).flatten()
    }

    fn read(&self, blk: u32) -> PageRead {
        let buffer = self.read_buffer(blk);
        // SAFETY: the buffer is pinned; the share lock is held until drop.
        unsafe {
            pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
            PageRead { buffer, page: pg_sys::BufferGetPage(buffer) }
        }
    }

    fn write(&self, blk: u32) -> PageWrite {
        self.begin_write(self.read_buffer(blk), None)
    }

    fn allocate(&self, kind: PageKind) -> (u32, PageWrite) {
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
        (blk, self.begin_write(buffer, Some(kind)))
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
