//! The Merkle tree of RFC 9162 (Certificate Transparency 2.0, §2.1) over
//! the links of the global log, in log order.
//!
//! A leaf's hash is `SHA-256(0x00 || link)`, an inner node's
//! `SHA-256(0x01 || left || right)`; the tree of `n` leaves splits at the
//! largest power of two below `n`. The hash of the empty tree is
//! `SHA-256("")`.

use sha2::{Digest as _, Sha256};

use crate::store::Link;

/// The hash of a leaf holding `link`.
pub fn leaf_hash(link: &Link) -> Link {
    let mut h = Sha256::new();
    h.update([0]);
    h.update(link.0);
    Link(h.finalize().into())
}

/// The hash of an inner node.
pub fn node_hash(left: &Link, right: &Link) -> Link {
    let mut h = Sha256::new();
    h.update([1]);
    h.update(left.0);
    h.update(right.0);
    Link(h.finalize().into())
}

/// The root of the empty tree.
pub fn empty_root() -> Link {
    Link::sha256(b"")
}

/// The root of a tree given its frontier: the roots of its perfect
/// subtrees, largest (leftmost) first.
pub fn root_of_frontier(frontier: &[Link]) -> Link {
    let mut nodes = frontier.iter().rev();
    let Some(last) = nodes.next() else {
        return empty_root();
    };
    nodes.fold(*last, |right, left| node_hash(left, &right))
}

/// A growing tree kept as its frontier: `O(log n)` hashes, enough to add
/// leaves and compute the root. What a sealer keeps, and what a seal
/// records so that the next sealer resumes from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// The perfect subtrees' roots, largest first; the `i`-th has the size
    /// of the `i`-th set bit of `size`, from the top.
    roots: Vec<Link>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// The tree of `size` leaves whose frontier is `roots`, if they fit
    /// (one root per set bit of `size`).
    pub fn from_roots(size: u64, roots: Vec<Link>) -> Option<Self> {
        (roots.len() == size.count_ones() as usize).then_some(Frontier { size, roots })
    }

    /// How many leaves it holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Its perfect subtrees' roots, largest first.
    pub fn roots(&self) -> &[Link] {
        &self.roots
    }

    /// Adds a leaf holding `link`.
    pub fn push(&mut self, link: &Link) {
        let mut hash = leaf_hash(link);
        // Each trailing one bit of the old size is a subtree of the same
        // height as the one being carried: merge them.
        let mut carry = self.size;
        while carry & 1 == 1 {
            let left = self.roots.pop().expect("a set bit has its subtree");
            hash = node_hash(&left, &hash);
            carry >>= 1;
        }
        self.roots.push(hash);
        self.size += 1;
    }

    /// The root of the tree.
    pub fn root(&self) -> Link {
        root_of_frontier(&self.roots)
    }
}

/// The whole tree, every level kept (64 bytes per leaf): the root of any
/// earlier size, and inclusion proofs. What a verifier builds.
#[derive(Debug, Clone, Default)]
pub struct MerkleLog {
    /// `levels[h][i]` is the root of the perfect subtree of leaves
    /// `i * 2^h .. (i + 1) * 2^h`.
    levels: Vec<Vec<Link>>,
}

impl MerkleLog {
    /// The empty tree.
    pub fn new() -> Self {
        MerkleLog {
            levels: vec![Vec::new()],
        }
    }

    /// How many leaves it holds.
    pub fn len(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// Adds a leaf holding `link`.
    pub fn push(&mut self, link: &Link) {
        let mut hash = leaf_hash(link);
        self.levels[0].push(hash);
        let mut level = 0;
        let mut index = self.levels[0].len() - 1;
        while index % 2 == 1 {
            hash = node_hash(&self.levels[level][index - 1], &hash);
            level += 1;
            index /= 2;
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
        }
    }

    /// The perfect subtrees that make up leaves `lo..hi` (`lo` aligned to a
    /// power of two at least `hi - lo`, as every range of the RFC's
    /// recursion is), largest first, with their first leaf and size.
    fn subtrees(&self, mut lo: u64, hi: u64) -> Vec<(u64, u64, Link)> {
        let mut out = Vec::new();
        while lo < hi {
            let mut height = 0;
            while height + 1 < 64
                && lo.is_multiple_of(1 << (height + 1))
                && lo + (1 << (height + 1)) <= hi
                && (height + 1) < self.levels.len()
            {
                height += 1;
            }
            out.push((lo, 1 << height, self.levels[height][(lo >> height) as usize]));
            lo += 1 << height;
        }
        out
    }

    fn range_root(&self, lo: u64, hi: u64) -> Link {
        let roots: Vec<Link> = self.subtrees(lo, hi).into_iter().map(|(_, _, r)| r).collect();
        root_of_frontier(&roots)
    }

    /// The root of the tree of its first `size` leaves, if it has them.
    pub fn root(&self, size: u64) -> Option<Link> {
        (size <= self.len()).then(|| self.range_root(0, size))
    }

    /// The frontier of its first `size` leaves (each perfect subtree with
    /// its first leaf and size), if it has them.
    pub fn frontier(&self, size: u64) -> Option<Vec<(u64, u64, Link)>> {
        (size <= self.len()).then(|| self.subtrees(0, size))
    }

    /// The audit path of leaf `index` in the tree of the first `size`
    /// leaves (RFC 9162 §2.1.3.1), if `index < size <= len`.
    pub fn inclusion_path(&self, index: u64, size: u64) -> Option<Vec<Link>> {
        if index >= size || size > self.len() {
            return None;
        }
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path);
        Some(path)
    }

    fn path(&self, index: u64, lo: u64, hi: u64, out: &mut Vec<Link>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = largest_power_of_two_below(n);
        if index - lo < k {
            self.path(index, lo, lo + k, out);
            out.push(self.range_root(lo + k, hi));
        } else {
            self.path(index, lo + k, hi, out);
            out.push(self.range_root(lo, lo + k));
        }
    }
}

/// The largest power of two below `n` (`n >= 2`).
fn largest_power_of_two_below(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Whether `path` proves that the leaf holding `link` is leaf `index` of
/// the tree of `size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(link: &Link, index: u64, size: u64, path: &[Link], root: &Link) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf_hash(link);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC's definition, written as it reads: the reference the
    /// incremental forms are checked against.
    fn mth(leaves: &[Link]) -> Link {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = largest_power_of_two_below(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Link> {
        (0..n).map(|i| Link::sha256(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_form_of_the_root_agrees_with_the_definition() {
        let all = leaves(70);
        let mut frontier = Frontier::new();
        let mut log = MerkleLog::new();
        assert_eq!(frontier.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(leaf);
            log.push(leaf);
            let expected = mth(&all[..=i]);
            assert_eq!(frontier.root(), expected, "frontier at {}", i + 1);
            assert_eq!(log.root(i as u64 + 1), Some(expected), "log at {}", i + 1);
            let resumed = Frontier::from_roots(frontier.size(), frontier.roots().to_vec()).unwrap();
            assert_eq!(resumed, frontier);
        }
        for size in 0..=70 {
            assert_eq!(log.root(size), Some(mth(&all[..size as usize])));
        }
        assert_eq!(log.root(71), None);
    }

    #[test]
    fn inclusion_paths_verify_and_nothing_else_does() {
        let all = leaves(37);
        let mut log = MerkleLog::new();
        for leaf in &all {
            log.push(leaf);
        }
        for size in 1..=37 {
            let root = log.root(size).unwrap();
            for index in 0..size {
                let path = log.inclusion_path(index, size).unwrap();
                assert!(verify_inclusion(&all[index as usize], index, size, &path, &root));
                // Another leaf, another index, another size or root: refused.
                let other = Link::sha256(b"other");
                assert!(!verify_inclusion(&other, index, size, &path, &root));
                if size > 1 {
                    assert!(!verify_inclusion(
                        &all[index as usize],
                        (index + 1) % size,
                        size,
                        &path,
                        &root
                    ));
                }
                if let Some(bigger) = log.root(size + 1) {
                    assert!(!verify_inclusion(&all[index as usize], index, size + 1, &path, &bigger));
                }
                assert!(!verify_inclusion(&all[index as usize], index, size, &path, &other));
            }
        }
    }

    #[test]
    fn the_rfc_test_vector_for_an_empty_tree() {
        assert_eq!(
            empty_root().to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
