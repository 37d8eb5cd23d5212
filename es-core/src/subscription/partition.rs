//! Partitions of a subscription: the log split by stream, so that several
//! runners share one read model and each stream's events stay in order.

use std::fmt;

/// One partition of a subscription run as `count` partitions: it applies
/// the events of the streams whose [`stream_partition`] is `index`, and
/// moves its checkpoint past the others' events undecoded.
///
/// Every event of a stream goes to the same partition, so a partition sees
/// each of its streams' events in order; events of streams in different
/// partitions are applied in no particular order relative to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    index: u32,
    count: u32,
}

impl Partition {
    /// Partition `index` of `count` (numbered from 0); `None` unless
    /// `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Self> {
        (index < count).then_some(Partition { index, count })
    }

    /// The whole log as one partition.
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };

    /// Its number, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many partitions the subscription has.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Every partition of a subscription run as `count` partitions.
    pub fn all(count: u32) -> impl Iterator<Item = Partition> {
        (0..count).map(move |index| Partition { index, count })
    }

    /// Whether events of the stream `aggregate_type`/`aggregate_id` go to
    /// this partition.
    pub fn holds(self, aggregate_type: &str, aggregate_id: &str) -> bool {
        self.count == 1 || stream_partition(aggregate_type, aggregate_id, self.count) == self.index
    }

    /// The suffix this partition adds to its subscription's checkpoint name,
    /// `#index/count` (nothing for the whole log).
    pub fn suffix(self) -> String {
        if self.count == 1 {
            String::new()
        } else {
            format!("#{}/{}", self.index, self.count)
        }
    }

    /// Reads a [`suffix`](Self::suffix) back: `#3/8` is partition 3 of 8,
    /// `""` the whole log; anything else is `None`.
    pub fn from_suffix(suffix: &str) -> Option<Self> {
        if suffix.is_empty() {
            return Some(Partition::WHOLE);
        }
        let (index, count) = suffix.strip_prefix('#')?.split_once('/')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(index) || !digits(count) {
            return None;
        }
        let partition = Partition::new(index.parse().ok()?, count.parse().ok()?)?;
        // One spelling per partition: no leading zeros, no `#0/1`.
        (partition.count > 1 && partition.suffix() == suffix).then_some(partition)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "partition {} of {}", self.index, self.count)
    }
}

/// The partition, of `count`, that holds the stream `aggregate_type` /
/// `aggregate_id`: 64-bit FNV-1a of the type's UTF-8 bytes, a zero byte and
/// the id's bytes, modulo `count`. The definition is fixed: the same stream
/// lands in the same partition on every platform and in every release, so
/// partitioned checkpoints stay right across upgrades. `count` 0 is taken
/// as 1.
pub fn stream_partition(aggregate_type: &str, aggregate_id: &str, count: u32) -> u32 {
    let hash = crate::util::fnv1a64([aggregate_type.as_bytes(), &[0], aggregate_id.as_bytes()]);
    (hash % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_of_type_zero_id() {
        // Pinned values: changing them moves streams between partitions of
        // every stored checkpoint.
        assert_eq!(crate::util::fnv1a64([b"".as_slice()]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(crate::util::fnv1a64([b"a".as_slice()]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(crate::util::fnv1a64([b"foobar".as_slice()]), 0x8594_4171_f739_67e8);
        let h = crate::util::fnv1a64([b"Account".as_slice(), &[0], b"acc-1"]);
        assert_eq!(h, crate::util::fnv1a64([b"Account\0acc-1".as_slice()]));
        assert_eq!(stream_partition("Account", "acc-1", 8), (h % 8) as u32);
        assert_eq!(stream_partition("Account", "acc-1", 1), 0);
        assert_eq!(stream_partition("Account", "acc-1", 0), 0);
        // The zero byte keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            crate::util::fnv1a64([b"ab".as_slice(), &[0], b"c"]),
            crate::util::fnv1a64([b"a".as_slice(), &[0], b"bc"])
        );
    }

    #[test]
    fn every_stream_is_in_exactly_one_partition_and_they_share_the_streams() {
        let mut counts = [0u32; 8];
        for i in 0..8_000 {
            let id = format!("acc-{i}");
            let holders: Vec<_> = Partition::all(8).filter(|p| p.holds("Account", &id)).collect();
            assert_eq!(holders.len(), 1, "{id}");
            counts[holders[0].index() as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn suffixes_read_back_and_only_their_one_spelling() {
        for p in Partition::all(12).chain([Partition::WHOLE]) {
            assert_eq!(Partition::from_suffix(&p.suffix()), Some(p));
        }
        for bad in [
            "#", "#1", "#1/", "#/2", "#2/2", "#01/2", "#0/1", "#-1/2", "1/2", "#1/2x", "#+1/2",
        ] {
            assert_eq!(Partition::from_suffix(bad), None, "{bad}");
        }
        assert_eq!(Partition::new(3, 3), None);
        assert_eq!(
            Partition::new(2, 3).map(|p| p.to_string()).as_deref(),
            Some("partition 2 of 3")
        );
    }
}
