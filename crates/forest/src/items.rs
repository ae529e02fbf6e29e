//! The item chain: fixed-size records (heap TID, flags, norm, full vector)
//! packed back to back over a linked list of item pages, a record's vector
//! continuing on the next page when it does not fit.

use half::f16;

use crate::format::*;
use crate::store::{PageKind, PageStore};
use crate::Corruption;

/// Where an item record starts: its page and byte offset in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemLoc {
    pub block: u32,
    pub offset: u16,
}

impl ItemLoc {
    pub fn key(self) -> u64 {
        (u64::from(self.block) << 16) | u64::from(self.offset)
    }
}

/// Appends records at the tail of the chain. Pages are locked only inside
/// `append`, so no lock is held between calls (a build's table scan runs
/// between them, and a held buffer lock would block query cancel).
pub struct ItemAppender<'s, S: PageStore + 's> {
    store: &'s S,
    block: u32,
    used: usize,
}

impl<'s, S: PageStore> ItemAppender<'s, S> {
    /// Starts a new chain on a freshly allocated page.
    pub fn new_chain(store: &'s S) -> Self {
        let (block, mut page) = store.allocate(PageKind::Item);
        ItemPageHeader::default().write(&mut page);
        ItemAppender {
            store,
            block,
            used: ItemPageHeader::SIZE,
        }
    }

    /// Continues the chain at its tail page, `used` bytes of which are taken.
    pub fn resume(store: &'s S, block: u32, used: usize) -> Self {
        ItemAppender { store, block, used }
    }

    /// Allocates the next page of the chain and links it from `page`, the
    /// current one (lock order: current page, then the new one).
    fn advance(&mut self, page: &mut S::Write<'s>, continued_bytes: usize) -> S::Write<'s> {
        let (block, mut next) = self.store.allocate(PageKind::Item);
        let header = ItemPageHeader {
            next: 0,
            continued_bytes: continued_bytes as u16,
            records_started: 0,
        };
        header.write(&mut next);
        let mut header = ItemPageHeader::read(page);
        header.next = block;
        header.write(page);
        self.block = block;
        self.used = ItemPageHeader::SIZE;
        next
    }

    pub fn append(&mut self, header: ItemRecordHeader, vector: &[f16]) -> ItemLoc {
        let body = self.store.body_size();
        let mut page = self.store.write(self.block);
        if self.used + ItemRecordHeader::SIZE > body {
            page = self.advance(&mut page, 0);
        }
        let loc = ItemLoc {
            block: self.block,
            offset: self.used as u16,
        };
        header.write(&mut page[self.used..]);
        let mut page_header = ItemPageHeader::read(&page);
        page_header.records_started += 1;
        page_header.write(&mut page);
        self.used += ItemRecordHeader::SIZE;

        let bytes = vector_bytes(vector);
        let first = (body - self.used).min(VECTOR_BYTES);
        page[self.used..self.used + first].copy_from_slice(&bytes[..first]);
        self.used += first;
        if first < VECTOR_BYTES {
            let rest = VECTOR_BYTES - first;
            let mut next = self.advance(&mut page, rest);
            next[self.used..self.used + rest].copy_from_slice(&bytes[first..]);
            self.used += rest;
        }
        loc
    }

    /// The tail: `(block, bytes used in it)`.
    pub fn finish(self) -> (u32, u32) {
        (self.block, self.used as u32)
    }
}

fn vector_bytes(vector: &[f16]) -> [u8; VECTOR_BYTES] {
    let mut bytes = [0u8; VECTOR_BYTES];
    for (b, v) in bytes.chunks_exact_mut(2).zip(vector) {
        b.copy_from_slice(&v.to_le_bytes());
    }
    bytes
}

fn not_an_item_page(loc: ItemLoc) -> Corruption {
    Corruption::new(
        loc.block,
        format!("item at offset {}: not an item page", loc.offset),
    )
}

fn past_the_chain(loc: ItemLoc) -> Corruption {
    Corruption::new(
        loc.block,
        format!(
            "item at offset {}: record continues past the end of the chain",
            loc.offset
        ),
    )
}

/// Checks that a record header fits at `loc`'s offset.
fn check_offset<S: PageStore>(store: &S, loc: ItemLoc) -> Result<(), Corruption> {
    let offset = loc.offset as usize;
    if offset < ItemPageHeader::SIZE || offset + ItemRecordHeader::SIZE > store.body_size() {
        return Err(Corruption::new(
            loc.block,
            format!("item at offset {}: offset out of range", loc.offset),
        ));
    }
    Ok(())
}

/// Checks that `loc` can hold a record header: an item page, offset in range.
fn check_loc<S: PageStore>(store: &S, loc: ItemLoc) -> Result<(), Corruption> {
    if !store.is_page_of(loc.block, PageKind::Item) {
        return Err(not_an_item_page(loc));
    }
    check_offset(store, loc)
}

/// Checks that `next`, the page after the record at `loc`, is an item page.
fn check_next_page<S: PageStore>(store: &S, loc: ItemLoc, next: u32) -> Result<(), Corruption> {
    if !store.is_page_of(next, PageKind::Item) {
        return Err(past_the_chain(loc));
    }
    Ok(())
}

/// Checks that the body of page `next` starts with the `rest` bytes of the
/// record at `loc`.
fn check_continued(
    loc: ItemLoc,
    next: u32,
    next_body: &[u8],
    rest: usize,
) -> Result<(), Corruption> {
    if ItemPageHeader::read(next_body).continued_bytes as usize != rest {
        return Err(Corruption::new(
            next,
            format!(
                "item at offset {} of block {}: continuation length does not match",
                loc.offset, loc.block
            ),
        ));
    }
    Ok(())
}

/// Reads a record: its header, and its vector into `vector` (2048 values).
///
/// A record that continues on the next page is read with both pages share
/// locked (in chain order, as writers lock them), so a slot being refilled
/// concurrently is never seen half old, half new.
pub fn read_item<S: PageStore>(
    store: &S,
    loc: ItemLoc,
    vector: &mut [f16],
) -> Result<ItemRecordHeader, Corruption> {
    check_offset(store, loc)?;
    let body = store.body_size();
    let offset = loc.offset as usize;
    let page = store
        .read_kind(loc.block, PageKind::Item)
        .ok_or_else(|| not_an_item_page(loc))?;
    let header = ItemRecordHeader::read(&page[offset..]);
    let start = offset + ItemRecordHeader::SIZE;
    let first = (body - start).min(VECTOR_BYTES);
    copy_f16s(&page[start..start + first], &mut vector[..first / 2]);
    if first < VECTOR_BYTES {
        let rest = VECTOR_BYTES - first;
        let next = ItemPageHeader::read(&page).next;
        let next_page = store
            .read_kind(next, PageKind::Item)
            .ok_or_else(|| past_the_chain(loc))?;
        check_continued(loc, next, &next_page, rest)?;
        let start = ItemPageHeader::SIZE;
        copy_f16s(&next_page[start..start + rest], &mut vector[first / 2..]);
    }
    Ok(header)
}

/// Clears [`ITEM_INSERTING`]: the item is now in every tree. `loc` is where
/// this insert stored the record, so it needs no checking.
pub fn finish_insert<S: PageStore>(store: &S, loc: ItemLoc) {
    let mut page = store.write(loc.block);
    let at = loc.offset as usize;
    let mut record = ItemRecordHeader::read(&page[at..]);
    record.flags &= !ITEM_INSERTING;
    record.write(&mut page[at..]);
}

/// Stores a live record in the free slot at `loc` and returns the free
/// list's next link `(block, offset)`. The slot's page (and the next one if
/// the vector continues there) are written in chain order; the caller holds
/// the metapage, so with it they form one change.
pub fn refill<S: PageStore>(
    store: &S,
    loc: ItemLoc,
    header: ItemRecordHeader,
    vector: &[f16],
) -> Result<(u32, u16), Corruption> {
    let old = rewrite(store, loc, header, vector, |old| {
        (old.flags == ITEM_DELETED | ITEM_FREE)
            .then_some(())
            .ok_or_else(|| {
                Corruption::new(
                    loc.block,
                    format!(
                        "free list points at item offset {}, which is not free",
                        loc.offset
                    ),
                )
            })
    })?;
    Ok(old.free_link())
}

/// Writes a record over the slot at `loc` if `replaceable` accepts the
/// header there, and returns that header. The slot's page (and the next one
/// if the vector continues there) are written in chain order, in one change.
pub fn rewrite<S: PageStore>(
    store: &S,
    loc: ItemLoc,
    header: ItemRecordHeader,
    vector: &[f16],
    replaceable: impl FnOnce(&ItemRecordHeader) -> Result<(), Corruption>,
) -> Result<ItemRecordHeader, Corruption> {
    check_loc(store, loc)?;
    let body = store.body_size();
    let offset = loc.offset as usize;
    let mut page = store.write(loc.block);
    let old = ItemRecordHeader::read(&page[offset..]);
    replaceable(&old)?;
    let bytes = vector_bytes(vector);
    let start = offset + ItemRecordHeader::SIZE;
    let first = (body - start).min(VECTOR_BYTES);
    if first < VECTOR_BYTES {
        let rest = VECTOR_BYTES - first;
        let next = ItemPageHeader::read(&page).next;
        check_next_page(store, loc, next)?;
        let mut next_page = store.write(next);
        check_continued(loc, next, &next_page, rest)?;
        next_page[ItemPageHeader::SIZE..ItemPageHeader::SIZE + rest]
            .copy_from_slice(&bytes[first..]);
    }
    header.write(&mut page[offset..]);
    page[start..start + first].copy_from_slice(&bytes[..first]);
    Ok(old)
}

fn copy_f16s(bytes: &[u8], out: &mut [f16]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16::from_le_bytes([b[0], b[1]]);
    }
}

/// Calls `f` with every record of the chain from `start` (a record written
/// by this build) to the end, in chain order. Holds no page while `f` runs.
pub fn for_each_record_from<S: PageStore>(store: &S, start: ItemLoc, mut f: impl FnMut(ItemLoc)) {
    let mut block = start.block;
    while block != 0 {
        let header = ItemPageHeader::read(&store.read(block));
        let first = ItemPageHeader::SIZE + header.continued_bytes as usize;
        for k in 0..header.records_started as usize {
            let offset = first + k * ITEM_RECORD_BYTES;
            if block != start.block || offset >= start.offset as usize {
                f(ItemLoc {
                    block,
                    offset: offset as u16,
                });
            }
        }
        block = header.next;
    }
}
