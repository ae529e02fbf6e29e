//! A small cache of the descriptors of the last few inputs, keyed by their exact bytes.
//!
//! Under a generic plan PostgreSQL does not fold `image_embedding($1)` into a constant, and
//! evaluates it again for every row it returns (the `ORDER BY` expression is projected per
//! row). The same bytes then come back a few times within one statement; this cache answers
//! them without running the model again.

use std::collections::VecDeque;

/// The values computed for the most recent inputs, most recent first.
///
/// Entries are matched by their full bytes (length first, then a byte comparison, which stops
/// at the first difference), so a hit is always the value of exactly these bytes; with a
/// handful of entries no hash is needed to find them. Bounded both in entries and in the
/// bytes kept: an input larger than `max_bytes` is never stored.
#[derive(Debug)]
pub struct RecentInputs<V> {
    entries: VecDeque<(Box<[u8]>, V)>,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
}

impl<V: Clone> RecentInputs<V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> RecentInputs<V> {
        RecentInputs {
            entries: VecDeque::with_capacity(max_entries),
            max_entries,
            max_bytes,
            bytes: 0,
        }
    }

    /// The value stored for exactly these bytes, if any (it becomes the most recent).
    pub fn get(&mut self, input: &[u8]) -> Option<V> {
        let at = self
            .entries
            .iter()
            .position(|(key, _)| key.len() == input.len() && **key == *input)?;
        let entry = self.entries.remove(at)?;
        let value = entry.1.clone();
        self.entries.push_front(entry);
        Some(value)
    }

    /// Stores the value of `input`, evicting the least recent entries to stay within bounds.
    pub fn insert(&mut self, input: &[u8], value: V) {
        if self.max_entries == 0 || input.len() > self.max_bytes {
            return;
        }
        if let Some(at) = self.entries.iter().position(|(key, _)| **key == *input) {
            let (key, _) = self.entries.remove(at).expect("position is in range");
            self.bytes -= key.len();
        }
        while self.entries.len() >= self.max_entries || self.bytes + input.len() > self.max_bytes {
            let (key, _) = self.entries.pop_back().expect("bytes > 0 means an entry");
            self.bytes -= key.len();
        }
        self.bytes += input.len();
        self.entries.push_front((input.into(), value));
    }

    /// Forgets every entry and frees their memory.
    pub fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_same_bytes() {
        let mut cache = RecentInputs::new(4, 1000);
        cache.insert(b"abcd", 1);
        assert_eq!(cache.get(b"abcd"), Some(1));
        // Same length, one byte different; a prefix; a longer input.
        assert_eq!(cache.get(b"abce"), None);
        assert_eq!(cache.get(b"abc"), None);
        assert_eq!(cache.get(b"abcde"), None);
        assert_eq!(cache.get(b""), None);
    }

    #[test]
    fn evicts_the_least_recently_used_entry() {
        let mut cache = RecentInputs::new(2, 1000);
        cache.insert(b"a", 1);
        cache.insert(b"b", 2);
        assert_eq!(cache.get(b"a"), Some(1)); // a is now the most recent
        cache.insert(b"c", 3);
        assert_eq!(cache.get(b"b"), None);
        assert_eq!(cache.get(b"a"), Some(1));
        assert_eq!(cache.get(b"c"), Some(3));
        assert_eq!(cache.entries.len(), 2);
    }

    #[test]
    fn keeps_within_the_byte_bound() {
        let mut cache = RecentInputs::new(10, 10);
        cache.insert(&[1; 4], 1);
        cache.insert(&[2; 4], 2);
        assert_eq!(cache.bytes, 8);
        cache.insert(&[3; 4], 3); // 12 > 10: the oldest goes
        assert_eq!(cache.bytes, 8);
        assert_eq!(cache.get(&[1; 4]), None);
        assert_eq!(cache.get(&[2; 4]), Some(2));
        cache.insert(&[4; 11], 4); // larger than the whole bound: not stored, nothing evicted
        assert_eq!(cache.get(&[4; 11]), None);
        assert_eq!(cache.entries.len(), 2);
        cache.insert(&[5; 10], 5); // exactly the bound: everything else goes
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.bytes, 10);
        assert_eq!(cache.get(&[5; 10]), Some(5));
    }

    #[test]
    fn storing_the_same_bytes_again_replaces_the_entry() {
        let mut cache = RecentInputs::new(3, 100);
        cache.insert(b"x", 1);
        cache.insert(b"x", 2);
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.bytes, 1);
        assert_eq!(cache.get(b"x"), Some(2));
    }

    #[test]
    fn clear_forgets_everything() {
        let mut cache = RecentInputs::new(3, 100);
        cache.insert(b"x", 1);
        cache.insert(b"y", 2);
        cache.clear();
        assert!(cache.entries.is_empty());
        assert_eq!(cache.bytes, 0);
        assert_eq!(cache.get(b"x"), None);
    }

    #[test]
    fn zero_entries_stores_nothing() {
        let mut cache = RecentInputs::new(0, 100);
        cache.insert(b"x", 1);
        assert_eq!(cache.get(b"x"), None);
    }
}
