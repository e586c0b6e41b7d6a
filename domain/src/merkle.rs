//! An RFC 9162 (Certificate Transparency 2.0) Merkle tree over the sealed audit records:
//! tree heads, inclusion and consistency proofs, and their verification. Hashing is a port
//! ([`Sha256`]) so the domain carries no crypto library.
//!
//! Storage keeps the hash of every complete, aligned subtree: node `(level, index)` covers
//! leaves `index * 2^level .. (index + 1) * 2^level`. Every hash of a tree head or proof is
//! then either such a node or built from at most `log2(n)` of them, so proofs cost a
//! logarithmic number of lookups.

use std::collections::HashMap;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// SHA-256 over the concatenation of `parts`.
pub trait Sha256: Send + Sync + std::fmt::Debug {
    fn sha256(&self, parts: &[&[u8]]) -> Hash;
}

pub fn leaf_hash(h: &dyn Sha256, leaf: &[u8]) -> Hash {
    h.sha256(&[&[0u8], leaf])
}

pub fn node_hash(h: &dyn Sha256, left: &Hash, right: &Hash) -> Hash {
    h.sha256(&[&[1u8], left, right])
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The stored complete subtrees a computation reads: `(level, index)`.
pub type NodeId = (u32, u64);

/// Reads stored nodes, remembering which were asked for (so a caller can fetch exactly those
/// in one query and run again).
pub trait Nodes {
    fn node(&mut self, id: NodeId) -> Hash;
}

/// Records the nodes asked for, answering zeros: the first pass of a two-pass computation.
#[derive(Debug, Default)]
pub struct NodeRecorder(pub Vec<NodeId>);

impl Nodes for NodeRecorder {
    fn node(&mut self, id: NodeId) -> Hash {
        self.0.push(id);
        [0; 32]
    }
}

/// Nodes fetched beforehand; a missing one is an error in the caller's bookkeeping or a
/// store that lost nodes.
#[derive(Debug, Default)]
pub struct NodeMap {
    pub nodes: HashMap<NodeId, Hash>,
    pub missing: Vec<NodeId>,
}

impl Nodes for NodeMap {
    fn node(&mut self, id: NodeId) -> Hash {
        match self.nodes.get(&id) {
            Some(hash) => *hash,
            None => {
                self.missing.push(id);
                [0; 32]
            }
        }
    }
}

/// MTH(D[lo..hi]) where every left part is a stored complete subtree (as RFC 9162's
/// recursion guarantees when it starts at an aligned `lo`).
fn subtree(h: &dyn Sha256, nodes: &mut dyn Nodes, lo: u64, hi: u64) -> Hash {
    let n = hi - lo;
    if n.is_power_of_two() && lo % n == 0 {
        return nodes.node((n.trailing_zeros(), lo / n));
    }
    let k = split(n);
    let left = subtree(h, nodes, lo, lo + k);
    let right = subtree(h, nodes, lo + k, hi);
    node_hash(h, &left, &right)
}

/// The tree head of the first `size` leaves (the hash of the empty string for size 0).
pub fn root(h: &dyn Sha256, nodes: &mut dyn Nodes, size: u64) -> Hash {
    if size == 0 {
        return h.sha256(&[]);
    }
    subtree(h, nodes, 0, size)
}

/// PATH(m, D[lo..hi]) of RFC 9162 section 2.1.3.1.
fn path(h: &dyn Sha256, nodes: &mut dyn Nodes, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(h, nodes, m, lo, lo + k, out);
        out.push(subtree(h, nodes, lo + k, hi));
    } else {
        path(h, nodes, m - k, lo + k, hi, out);
        out.push(subtree(h, nodes, lo, lo + k));
    }
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(h: &dyn Sha256, nodes: &mut dyn Nodes, index: u64, size: u64) -> Vec<Hash> {
    let mut out = Vec::new();
    if index < size {
        path(h, nodes, index, 0, size, &mut out);
    }
    out
}

/// SUBPROOF(m, D[lo..hi], b) of RFC 9162 section 2.1.4.1.
fn subproof(
    h: &dyn Sha256,
    nodes: &mut dyn Nodes,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(subtree(h, nodes, lo, hi));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(h, nodes, m, lo, lo + k, whole, out);
        out.push(subtree(h, nodes, lo + k, hi));
    } else {
        subproof(h, nodes, m - k, lo + k, hi, false, out);
        out.push(subtree(h, nodes, lo, lo + k));
    }
}

/// The consistency proof between the trees of `from` and `to` leaves (0 < from <= to).
pub fn consistency_proof(h: &dyn Sha256, nodes: &mut dyn Nodes, from: u64, to: u64) -> Vec<Hash> {
    let mut out = Vec::new();
    if 0 < from && from < to {
        subproof(h, nodes, from, 0, to, true, &mut out);
    }
    out
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    h: &dyn Sha256,
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(h, p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(h, &r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Verifies a consistency proof (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    h: &dyn Sha256,
    from: u64,
    to: u64,
    proof: &[Hash],
    from_root: &Hash,
    to_root: &Hash,
) -> bool {
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    if from == 0 || from > to {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if from.is_power_of_two() {
        path.insert(0, *from_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (from - 1, to - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(h, c, &fr);
            sr = node_hash(h, c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(h, &sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *from_root && sr == *to_root && snode == 0
}

/// Appends leaves one by one and yields the complete subtrees each completes, for storage:
/// the leaf itself at level 0, then every parent it closes. Starts from the right edge of
/// an existing tree of `size` leaves (`edge` = its complete subtrees, see [`right_edge`]).
#[derive(Debug, Clone)]
pub struct Appender {
    size: u64,
    /// The stored complete subtrees on the right edge, by level.
    edge: HashMap<u32, Hash>,
}

/// The nodes on the right edge of a tree of `size` leaves: the ones an append may combine.
pub fn right_edge(size: u64) -> Vec<NodeId> {
    (0..64)
        .filter(|level| size >> level & 1 == 1)
        .map(|level| (level, (size >> level) - 1))
        .collect()
}

impl Appender {
    /// `edge` holds the hashes of [`right_edge`]`(size)`, by node.
    pub fn new(size: u64, edge: &HashMap<NodeId, Hash>) -> Self {
        Self {
            size,
            edge: edge
                .iter()
                .map(|((level, _), hash)| (*level, *hash))
                .collect(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds one leaf hash; returns the nodes to store.
    pub fn push(&mut self, h: &dyn Sha256, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut out = vec![((0, index), leaf)];
        let mut hash = leaf;
        let mut level = 0;
        while (index + 1) >> level & 1 == 0 {
            // The leaf closed a subtree at `level + 1`: its left sibling is on the edge.
            let Some(left) = self.edge.remove(&level) else {
                break;
            };
            hash = node_hash(h, &left, &hash);
            level += 1;
            out.push(((level, (index + 1) / (1 << level) - 1), hash));
        }
        self.edge.insert(level, hash);
        self.size += 1;
        out
    }

    /// The tree head now, from the right edge alone (RFC 9162 shape: fold right to left).
    pub fn root(&self, h: &dyn Sha256) -> Hash {
        let mut levels: Vec<&u32> = self.edge.keys().collect();
        levels.sort();
        let mut acc: Option<Hash> = None;
        for level in levels {
            let hash = self.edge[level];
            acc = Some(match acc {
                None => hash,
                Some(right) => node_hash(h, &hash, &right),
            });
        }
        acc.unwrap_or_else(|| h.sha256(&[]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test-only hash: not cryptographic, but a faithful stand-in for the tree's shape
    /// (FNV-style mixing into 32 bytes, sensitive to order and content).
    #[derive(Debug)]
    pub struct TestHash;

    impl Sha256 for TestHash {
        fn sha256(&self, parts: &[&[u8]]) -> Hash {
            let mut state: [u64; 4] = [0xcbf29ce484222325, 0x100000001b3, 0x9e3779b97f4a7c15, 7];
            for (i, byte) in parts.iter().flat_map(|p| p.iter()).enumerate() {
                let lane = i % 4;
                state[lane] = (state[lane] ^ u64::from(*byte)).wrapping_mul(0x100000001b3);
                state[(lane + 1) % 4] = state[(lane + 1) % 4].rotate_left(5) ^ state[lane];
            }
            let mut out = [0u8; 32];
            for (i, word) in state.iter().enumerate() {
                out[i * 8..(i + 1) * 8].copy_from_slice(&word.to_le_bytes());
            }
            out
        }
    }

    /// MTH straight from the definition, for comparison.
    fn reference(h: &dyn Sha256, leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => h.sha256(&[]),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(h, &reference(h, &leaves[..k]), &reference(h, &leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Vec<Hash>, NodeMap, Appender) {
        let h = TestHash;
        let mut appender = Appender::new(0, &HashMap::new());
        let mut map = NodeMap::default();
        let mut leaves = Vec::new();
        for i in 0..n {
            let leaf = leaf_hash(&h, format!("record {i}").as_bytes());
            leaves.push(leaf);
            for (id, hash) in appender.push(&h, leaf) {
                map.nodes.insert(id, hash);
            }
        }
        (leaves, map, appender)
    }

    #[test]
    fn roots_match_the_definition_for_every_size() {
        let h = TestHash;
        let (leaves, mut map, _) = build(70);
        for size in 0..=70u64 {
            let expected = reference(&h, &leaves[..size as usize]);
            assert_eq!(root(&h, &mut map, size), expected, "size {size}");
        }
        assert!(map.missing.is_empty());
        for size in 1..=70u64 {
            let (_, _, appender) = build(size);
            assert_eq!(
                appender.root(&h),
                reference(&h, &leaves[..size as usize]),
                "appender {size}"
            );
        }
    }

    #[test]
    fn an_appender_resumes_from_the_stored_right_edge() {
        let h = TestHash;
        let (leaves, map, _) = build(37);
        let edge: HashMap<NodeId, Hash> = right_edge(23)
            .into_iter()
            .map(|id| (id, map.nodes[&id]))
            .collect();
        let mut resumed = Appender::new(23, &edge);
        for leaf in &leaves[23..] {
            for (id, hash) in resumed.push(&h, *leaf) {
                assert_eq!(map.nodes.get(&id), Some(&hash), "{id:?}");
            }
        }
        assert_eq!(resumed.root(&h), reference(&h, &leaves));
    }

    #[test]
    fn inclusion_proofs_verify_and_are_logarithmic() {
        let h = TestHash;
        let (leaves, mut map, _) = build(70);
        for size in 1..=70u64 {
            let head = root(&h, &mut map, size);
            for index in 0..size {
                let proof = inclusion_proof(&h, &mut map, index, size);
                assert!(proof.len() <= 7);
                assert!(
                    verify_inclusion(&h, &leaves[index as usize], index, size, &proof, &head),
                    "{index}/{size}"
                );
                let wrong = leaves[(index as usize + 1) % 70];
                assert!(
                    !verify_inclusion(&h, &wrong, index, size, &proof, &head)
                        || wrong == leaves[index as usize]
                );
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_catch_a_rewrite() {
        let h = TestHash;
        let (_, mut map, _) = build(70);
        for to in 1..=70u64 {
            let to_root = root(&h, &mut map, to);
            for from in 1..=to {
                let from_root = root(&h, &mut map, from);
                let proof = consistency_proof(&h, &mut map, from, to);
                assert!(
                    verify_consistency(&h, from, to, &proof, &from_root, &to_root),
                    "{from}->{to}"
                );
                let mut forged = from_root;
                forged[0] ^= 1;
                assert!(
                    !verify_consistency(&h, from, to, &proof, &forged, &to_root),
                    "{from}->{to}"
                );
            }
        }
    }

    #[test]
    fn the_recorder_names_exactly_the_nodes_a_proof_needs() {
        let h = TestHash;
        let (_, map, _) = build(70);
        let mut recorder = NodeRecorder::default();
        inclusion_proof(&h, &mut recorder, 5, 70);
        root(&h, &mut recorder, 70);
        let mut fetched = NodeMap {
            nodes: recorder.0.iter().map(|id| (*id, map.nodes[id])).collect(),
            missing: Vec::new(),
        };
        inclusion_proof(&h, &mut fetched, 5, 70);
        assert!(fetched.missing.is_empty());
        assert!(recorder.0.len() < 20);
    }
}
