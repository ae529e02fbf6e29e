//! Leaf pages, the one place that reads and writes their bodies: one leaf
//! per page, [`LeafPageHeader`] then entries of [`LeafEntryHeader`] + int8
//! code. An insert splits a full leaf in place (half its entries move to a
//! new leaf, and the parent gets the split node); a root leaf, or one split
//! by an older version of this code, holds its split node instead
//! ([`LEAF_SPLIT`]). Build, insert, search, VACUUM and check all go through
//! [`parse`], so every one of them refuses the same damage.

use std::collections::HashSet;

use crate::build::CodedItems;
use crate::format::*;
use crate::items::ItemLoc;
use crate::space::Rng;
use crate::store::{PageKind, PageStore};
use crate::two_means;
use crate::Corruption;

/// A leaf page body, parsed and checked.
pub(crate) enum Leaf<'p> {
    /// Split by an insert: the bytes of its split node (header + normal).
    Split(&'p [u8]),
    Entries(Entries<'p>),
}

/// The entries of a leaf page.
pub(crate) struct Entries<'p> {
    page: &'p [u8],
    count: usize,
    reduced_dims: usize,
}

impl<'p> Entries<'p> {
    pub fn len(&self) -> usize {
        self.count
    }

    /// Entry `k` (below `len`) and its code (`reduced_dims` bytes).
    pub fn get(&self, k: usize) -> (LeafEntryHeader, &'p [u8]) {
        let at = entry_offset(k, self.reduced_dims);
        let code = &self.page[at + LeafEntryHeader::SIZE..][..self.reduced_dims];
        (LeafEntryHeader::read(&self.page[at..]), code)
    }

    pub fn iter(&self) -> impl Iterator<Item = (LeafEntryHeader, &'p [u8])> + '_ {
        (0..self.count).map(|k| self.get(k))
    }
}

/// Where entry `k` of a leaf of a tree with `reduced_dims` starts.
fn entry_offset(k: usize, reduced_dims: usize) -> usize {
    LeafPageHeader::SIZE + k * leaf_entry_bytes(reduced_dims)
}

impl LeafEntryHeader {
    /// The item record this entry stands for.
    pub fn item(&self) -> ItemLoc {
        ItemLoc {
            block: self.item_block,
            offset: self.item_offset,
        }
    }
}

/// Parses the body of leaf page `block` of a tree with `reduced_dims`:
/// refuses unknown flags, a split leaf that still holds entries and more
/// entries than a page holds.
pub(crate) fn parse(block: u32, page: &[u8], reduced_dims: usize) -> Result<Leaf<'_>, Corruption> {
    let header = LeafPageHeader::read(page);
    if header.flags & !LEAF_SPLIT != 0 {
        return Err(Corruption::new(
            block,
            format!("unknown leaf flags {:#x}", header.flags),
        ));
    }
    let count = header.count as usize;
    if header.flags & LEAF_SPLIT != 0 {
        if count != 0 {
            return Err(Corruption::new(block, "split leaf still holds entries"));
        }
        let node = &page[LeafPageHeader::SIZE..][..split_node_bytes(reduced_dims)];
        return Ok(Leaf::Split(node));
    }
    if count > leaf_capacity(page.len(), reduced_dims) {
        return Err(Corruption::new(
            block,
            format!("leaf holds {count} entries"),
        ));
    }
    Ok(Leaf::Entries(Entries {
        page,
        count,
        reduced_dims,
    }))
}

/// Allocates a leaf page holding `entries` (each entry's header and code,
/// `code_stride` bytes); the page stays locked while the returned guard lives.
pub(crate) fn write_new<'s, 'c, S: PageStore>(
    store: &'s S,
    entries: impl ExactSizeIterator<Item = (LeafEntryHeader, &'c [u8])>,
) -> (u32, S::Write<'s>) {
    let (block, mut page) = store.allocate(PageKind::Leaf);
    LeafPageHeader {
        count: entries.len() as u16,
        ..LeafPageHeader::default()
    }
    .write(&mut page);
    for (k, (entry, code)) in entries.enumerate() {
        write_entry(&mut page, k, &entry, code);
    }
    (block, page)
}

fn write_entry(page: &mut [u8], k: usize, entry: &LeafEntryHeader, code: &[u8]) {
    let at = LeafPageHeader::SIZE + k * (LeafEntryHeader::SIZE + code.len());
    entry.write(&mut page[at..]);
    page[at + LeafEntryHeader::SIZE..][..code.len()].copy_from_slice(code);
}

/// Adds an entry to a leaf that `parse` found to hold `count` entries,
/// fewer than a page holds.
pub(crate) fn append(page: &mut [u8], count: usize, entry: &LeafEntryHeader, code: &[u8]) {
    write_entry(page, count, entry, code);
    LeafPageHeader {
        count: count as u16 + 1,
        ..LeafPageHeader::read(page)
    }
    .write(page);
}

/// A full leaf's entries plus one new one, divided by a two-means
/// hyperplane: `ids[..cut]` (indexes into `entries`) lie on its left.
struct Division {
    entries: Vec<LeafEntryHeader>,
    coded: CodedItems,
    ids: Vec<u32>,
    normal: Vec<f32>,
    offset: f32,
    cut: usize,
}

impl Division {
    /// Divides the entries of `page` (a leaf `parse` found full) and `extra`.
    fn of(page: &[u8], reduced_dims: usize, extra: (LeafEntryHeader, &[u8]), seed: u64) -> Self {
        let stride = code_stride(reduced_dims);
        let count = LeafPageHeader::read(page).count as usize;
        let mut entries = Vec::with_capacity(count + 1);
        let mut codes = Vec::with_capacity((count + 1) * stride);
        for k in 0..count {
            let at = entry_offset(k, reduced_dims);
            entries.push(LeafEntryHeader::read(&page[at..]));
            codes.extend_from_slice(&page[at + LeafEntryHeader::SIZE..][..stride]);
        }
        entries.push(extra.0);
        codes.extend_from_slice(extra.1);
        let coded = CodedItems {
            stride,
            codes,
            scales: entries.iter().map(|e| e.scale).collect(),
            code_norms_sq: entries.iter().map(|e| e.code_norm_sq).collect(),
        };
        let mut ids: Vec<u32> = (0..entries.len() as u32).collect();
        let (normal, offset, cut) =
            two_means::split(&coded, reduced_dims, &mut Rng::new(seed), &mut ids);
        Division {
            entries,
            coded,
            ids,
            normal,
            offset,
            cut,
        }
    }

    fn side(&self, left: bool) -> impl ExactSizeIterator<Item = (LeafEntryHeader, &[u8])> + '_ {
        let ids = if left {
            &self.ids[..self.cut]
        } else {
            &self.ids[self.cut..]
        };
        ids.iter()
            .map(|&i| (self.entries[i as usize], self.coded.code(i)))
    }
}

/// Splits a full leaf (its entries plus one new entry) into two new leaves
/// by two-means on the entries' codes; the page becomes their split node
/// (`LEAF_SPLIT`), so the reference to it stays valid. For root leaves,
/// whose parent is the metapage.
pub(crate) fn split<S: PageStore>(
    store: &S,
    page: &mut [u8],
    reduced_dims: usize,
    extra: (LeafEntryHeader, &[u8]),
    seed: u64,
) {
    let division = Division::of(page, reduced_dims, extra, seed);
    // Both new leaves stay locked until the split node is written, so the
    // glue can log the three pages as one change.
    let (left, _left_page) = write_new(store, division.side(true));
    let (right, _right_page) = write_new(store, division.side(false));
    page.fill(0);
    LeafPageHeader {
        count: 0,
        flags: LEAF_SPLIT,
        ..LeafPageHeader::default()
    }
    .write(page);
    let split = SplitNodeHeader {
        left: NodeRef::leaf(left),
        right: NodeRef::leaf(right),
        offset: division.offset,
        reserved: 0,
    };
    write_split_node(&split, &division.normal, &mut page[LeafPageHeader::SIZE..]);
}

/// Splits a full leaf (page `block`: its entries plus one new entry) in
/// place: the entries left of a two-means hyperplane stay on the page, whose
/// version goes up, the others move to a new leaf, written (and logged)
/// first. Returns the split node that must replace the reference to this
/// leaf in its parent (left child: this page at its new version; right: the
/// new leaf) with its normal. No page holds a split node alone.
pub(crate) fn split_in_place<S: PageStore>(
    store: &S,
    block: u32,
    page: &mut [u8],
    reduced_dims: usize,
    extra: (LeafEntryHeader, &[u8]),
    seed: u64,
) -> (SplitNodeHeader, Vec<f32>) {
    let division = Division::of(page, reduced_dims, extra, seed);
    let (right, right_page) = write_new(store, division.side(false));
    drop(right_page);
    let header = LeafPageHeader::read(page);
    let version = header.version.wrapping_add(1);
    let count = header.count as usize;
    // The entries that stay keep their slots; the slots of those that
    // leave, below the new count, take the staying entries from above it
    // (the new entry is number `count`). So the WAL record's delta is the
    // refilled slots, not the whole page, and the emptied end is zeros
    // (the page's hole, not logged at all).
    let cut = division.cut;
    let mut stays = vec![false; count + 1];
    for &i in &division.ids[..cut] {
        stays[i as usize] = true;
    }
    let mut from_above = (cut..=count).filter(|&i| stays[i]);
    for slot in (0..cut).filter(|&slot| !stays[slot]) {
        let i = from_above
            .next()
            .expect("as many staying entries above the cut as leaving ones below it");
        write_entry(
            page,
            slot,
            &division.entries[i],
            division.coded.code(i as u32),
        );
    }
    page[entry_offset(cut, reduced_dims)..entry_offset(count, reduced_dims)].fill(0);
    LeafPageHeader {
        count: cut as u16,
        version,
        ..header
    }
    .write(page);
    let split = SplitNodeHeader {
        left: NodeRef::leaf_version(block, version),
        right: NodeRef::leaf(right),
        offset: division.offset,
        reserved: 0,
    };
    (split, division.normal)
}

/// A leaf page's version ([`LeafPageHeader::version`]).
pub(crate) fn version(page: &[u8]) -> u16 {
    LeafPageHeader::read(page).version
}

/// Removes the entries of `dead` items from a leaf that `parse` found to
/// hold `count` entries, compacting the rest. Returns how many it removed.
pub(crate) fn remove_dead(
    page: &mut [u8],
    count: usize,
    reduced_dims: usize,
    dead: &HashSet<ItemLoc>,
) -> usize {
    let entry_bytes = leaf_entry_bytes(reduced_dims);
    let mut kept = 0;
    for k in 0..count {
        let at = entry_offset(k, reduced_dims);
        if !dead.contains(&LeafEntryHeader::read(&page[at..]).item()) {
            page.copy_within(at..at + entry_bytes, entry_offset(kept, reduced_dims));
            kept += 1;
        }
    }
    if kept < count {
        page[entry_offset(kept, reduced_dims)..entry_offset(count, reduced_dims)].fill(0);
        LeafPageHeader {
            count: kept as u16,
            ..LeafPageHeader::read(page)
        }
        .write(page);
    }
    count - kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    const TD: usize = 32;

    fn entry(block: u32) -> LeafEntryHeader {
        LeafEntryHeader {
            item_block: block,
            item_offset: 8,
            reserved: 0,
            scale: 0.5,
            code_norm_sq: 1.0,
        }
    }

    fn entries_of(page: &[u8]) -> Vec<(u32, Vec<u8>)> {
        match parse(1, page, TD).expect("a leaf") {
            Leaf::Entries(entries) => entries
                .iter()
                .map(|(e, code)| (e.item_block, code.to_vec()))
                .collect(),
            Leaf::Split(_) => panic!("not split"),
        }
    }

    #[test]
    fn entries_written_appended_and_removed_read_back() {
        let store = MemStore::postgres_sized();
        let code = |b: u8| vec![b; code_stride(TD)];
        let (c1, c2, c3) = (code(1), code(2), code(3));
        let (_, mut page) = write_new(
            &store,
            [(entry(1), &c1[..]), (entry(2), &c2[..])].into_iter(),
        );
        append(&mut page, 2, &entry(3), &c3);
        assert_eq!(
            entries_of(&page),
            vec![
                (1, c1[..TD].to_vec()),
                (2, c2[..TD].to_vec()),
                (3, c3[..TD].to_vec())
            ]
        );
        let dead: HashSet<ItemLoc> = [entry(2).item()].into_iter().collect();
        assert_eq!(remove_dead(&mut page, 3, TD, &dead), 1);
        assert_eq!(
            entries_of(&page),
            vec![(1, c1[..TD].to_vec()), (3, c3[..TD].to_vec())]
        );
        assert_eq!(remove_dead(&mut page, 2, TD, &dead), 0);
    }

    #[test]
    fn split_in_place_keeps_the_staying_entries_in_their_slots() {
        let store = MemStore::postgres_sized();
        let capacity = leaf_capacity(store.body_size(), TD);
        // Codes on two sides of coordinate 0, interleaved, so entries of
        // both sides lie below any cut.
        let code = |k: usize| {
            let mut c = vec![(k % 7) as u8; code_stride(TD)];
            c[0] = if k.is_multiple_of(2) {
                100
            } else {
                (-100i8) as u8
            };
            c[1] = k as u8; // no two alike, so no entry lies on the hyperplane
            c
        };
        let codes: Vec<Vec<u8>> = (0..=capacity).map(code).collect();
        let (block, mut page) = write_new(
            &store,
            (0..capacity).map(|k| (entry(k as u32 + 1), &codes[k][..])),
        );
        let before = entries_of(&page);
        let extra = (entry(capacity as u32 + 1), &codes[capacity][..]);
        let (split, normal) = split_in_place(&store, block, &mut page, TD, extra, 9);
        let right_page = store.read(split.right.block);
        let (left, right) = (entries_of(&page), entries_of(&right_page));
        // Every entry, the new one included, is on exactly one side, and
        // on the side of the hyperplane the split node says.
        let mut all: Vec<u32> = left.iter().chain(&right).map(|(b, _)| *b).collect();
        all.sort_unstable();
        assert_eq!(all, (1..=capacity as u32 + 1).collect::<Vec<_>>());
        let margin = |code: &[u8]| {
            split.offset
                + 0.5
                    * normal
                        .iter()
                        .zip(code)
                        .map(|(w, &c)| w * f32::from(c as i8))
                        .sum::<f32>()
        };
        assert!(left.iter().all(|(_, c)| margin(c) <= 0.0));
        assert!(right.iter().all(|(_, c)| margin(c) > 0.0));
        assert!(!left.is_empty() && !right.is_empty());
        // An entry that stays and was below the new count keeps its slot.
        let left_blocks: HashSet<u32> = left.iter().map(|(b, _)| *b).collect();
        for (slot, (b, _)) in before.iter().enumerate().take(left.len()) {
            if left_blocks.contains(b) {
                assert_eq!(left[slot].0, *b, "slot {slot} moved");
            }
        }
        // The emptied end of the page is zeros.
        assert!(page[entry_offset(left.len(), TD)..].iter().all(|&b| b == 0));
        assert_eq!(version(&page), 1);
        assert_eq!(split.left, NodeRef::leaf_version(block, 1));
    }

    #[test]
    fn damaged_leaf_headers_are_refused() {
        let body = vec![0u8; 8152];
        let with = |header: LeafPageHeader| {
            let mut page = body.clone();
            header.write(&mut page);
            parse(7, &page, TD).err().map(|c| c.to_string())
        };
        let refused = |header: LeafPageHeader, what: &str| {
            let message = with(header).expect("refused");
            assert!(message.contains(what), "{message}");
        };
        refused(
            LeafPageHeader {
                flags: 0x80,
                ..LeafPageHeader::default()
            },
            "unknown leaf flags",
        );
        refused(
            LeafPageHeader {
                flags: LEAF_SPLIT,
                count: 1,
                ..LeafPageHeader::default()
            },
            "split leaf still holds entries",
        );
        let capacity = leaf_capacity(body.len(), TD) as u16;
        refused(
            LeafPageHeader {
                count: capacity + 1,
                ..LeafPageHeader::default()
            },
            "leaf holds",
        );
        assert_eq!(
            with(LeafPageHeader {
                count: capacity,
                ..LeafPageHeader::default()
            }),
            None
        );
    }
}
