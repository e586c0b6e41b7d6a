//! The audit trail as auditors use it: the tree head, inclusion and consistency proofs, and
//! verification of the whole chain (against every stored checkpoint, or one an auditor kept).

use crate::audit::{hex, unhex, BadRecord, ChainVerifier, TreeHead};
use crate::merkle::{self, Hash, NodeMap, NodeRecorder, Nodes};
use crate::ports::{AuditFilter, Checkpoint, RepositoryError};
use crate::services::{ServiceError, ServiceResult, Services};
use crate::validation::{FieldError, ValidationErrors};

/// How many records verification reads at a time.
const VERIFY_PAGE: i64 = 2_000;

/// An inclusion proof: the leaf and the audit path to the root of `tree_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub position: i64,
    pub tree_size: i64,
    pub leaf_hash: Hash,
    pub path: Vec<Hash>,
    pub root: Hash,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub from: i64,
    pub to: i64,
    pub from_root: Hash,
    pub to_root: Hash,
    pub path: Vec<Hash>,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many records were checked.
    pub checked: i64,
    pub head: TreeHead,
    /// The checkpoints whose root was recomputed and matched.
    pub checkpoints_matched: Vec<i64>,
    /// The first problem, if any.
    pub first_bad: Option<BadRecord>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.first_bad.is_none()
    }
}

fn invalid(field: &str, rule: &'static str, message: String) -> ServiceError {
    ServiceError::Invalid(ValidationErrors(vec![FieldError::new(
        field, rule, message,
    )]))
}

impl Services {
    /// Runs `compute` against the stored nodes: once to learn which it needs, then with them
    /// fetched in one read.
    fn with_nodes<T>(&self, compute: impl Fn(&mut dyn Nodes) -> T) -> ServiceResult<T> {
        let mut recorder = NodeRecorder::default();
        compute(&mut recorder);
        let mut map = NodeMap {
            nodes: self.audit.tree_nodes(&recorder.0)?,
            missing: Vec::new(),
        };
        let value = compute(&mut map);
        if map.missing.is_empty() {
            Ok(value)
        } else {
            Err(ServiceError::Storage(RepositoryError::Corrupt(format!(
                "the audit tree lacks nodes {:?}",
                map.missing
            ))))
        }
    }

    fn sealed_size(&self) -> ServiceResult<i64> {
        Ok(self.audit.sealed_head()?.0)
    }

    /// The sealed head now: size, last chain hash and Merkle root.
    pub fn tree_head(&self) -> ServiceResult<TreeHead> {
        let (size, chain) = self.audit.sealed_head()?;
        let h = self.hasher.as_ref();
        let root = self.with_nodes(|nodes| merkle::root(h, nodes, size as u64))?;
        Ok(TreeHead {
            size,
            chain_hash: chain.as_deref().and_then(unhex).unwrap_or([0; 32]),
            root,
        })
    }

    /// Proof that record `position` is in the tree of `tree_size` records.
    pub fn inclusion_proof(&self, position: i64, tree_size: i64) -> ServiceResult<InclusionProof> {
        let size = self.sealed_size()?;
        if tree_size < 1 || tree_size > size {
            return Err(invalid(
                "tree_size",
                "sealed_size",
                format!("must be 1 to {size}, the records sealed so far"),
            ));
        }
        if position < 0 || position >= tree_size {
            return Err(invalid(
                "position",
                "in_tree",
                format!("must be 0 to {}", tree_size - 1),
            ));
        }
        let h = self.hasher.as_ref();
        let (index, n) = (position as u64, tree_size as u64);
        let (leaf, path, root) = self.with_nodes(|nodes| {
            (
                nodes.node((0, index)),
                merkle::inclusion_proof(h, nodes, index, n),
                merkle::root(h, nodes, n),
            )
        })?;
        Ok(InclusionProof {
            position,
            tree_size,
            leaf_hash: leaf,
            path,
            root,
        })
    }

    /// Proof that the tree of `to` records extends the tree of `from` records.
    pub fn consistency_proof(&self, from: i64, to: i64) -> ServiceResult<ConsistencyProof> {
        let size = self.sealed_size()?;
        if to < 1 || to > size {
            return Err(invalid(
                "to",
                "sealed_size",
                format!("must be 1 to {size}, the records sealed so far"),
            ));
        }
        if from < 1 || from > to {
            return Err(invalid("from", "at_most_to", format!("must be 1 to {to}")));
        }
        let h = self.hasher.as_ref();
        let (a, b) = (from as u64, to as u64);
        let (path, from_root, to_root) = self.with_nodes(|nodes| {
            (
                merkle::consistency_proof(h, nodes, a, b),
                merkle::root(h, nodes, a),
                merkle::root(h, nodes, b),
            )
        })?;
        Ok(ConsistencyProof {
            from,
            to,
            from_root,
            to_root,
            path,
        })
    }

    /// Reads the whole sealed trail in order and checks every chain hash, that positions are
    /// contiguous, and the Merkle root at each stored checkpoint (and at `kept`, a checkpoint
    /// an auditor kept elsewhere, whose signature the caller has verified). A trail shorter
    /// than a checkpoint was truncated.
    pub fn verify_trail(&self, kept: Option<&Checkpoint>) -> ServiceResult<VerifyReport> {
        let mut checkpoints = self.audit.checkpoints()?;
        if let Some(kept) = kept {
            checkpoints.retain(|c| c.tree_size != kept.tree_size);
            checkpoints.push(kept.clone());
        }
        checkpoints.sort_by_key(|c| c.tree_size);
        let h = self.hasher.as_ref();
        let mut verifier = ChainVerifier::new(h);
        let mut matched = Vec::new();
        let mut pending = checkpoints.iter().peekable();
        let mut after = None;
        let mut first_bad = None;
        let check_at = |verifier: &ChainVerifier<'_>,
                        checkpoint: &Checkpoint|
         -> Option<BadRecord> {
            let head = verifier.head();
            let expected = (unhex(&checkpoint.root_hash), unhex(&checkpoint.chain_hash));
            if expected != (Some(head.root), Some(head.chain_hash)) {
                Some(BadRecord {
                    position: checkpoint.tree_size - 1,
                    reason: format!(
                        "the first {} records do not match the checkpoint signed at {} (the trail was rewritten)",
                        checkpoint.tree_size, checkpoint.signed_at
                    ),
                })
            } else {
                None
            }
        };
        // A checkpoint of size 0 has nothing to compare.
        while pending.peek().is_some_and(|c| c.tree_size == 0) {
            pending.next();
        }
        'pages: loop {
            let page = self
                .audit
                .sealed_records(&AuditFilter::default(), after, VERIFY_PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.event.position;
            for record in &page {
                if let Err(bad) = verifier.check(&record.event, &record.hash) {
                    first_bad = Some(bad);
                    break 'pages;
                }
                let size = verifier.head().size;
                while let Some(checkpoint) = pending.next_if(|c| c.tree_size == size) {
                    if let Some(bad) = check_at(&verifier, checkpoint) {
                        first_bad = Some(bad);
                        break 'pages;
                    }
                    matched.push(checkpoint.tree_size);
                }
            }
            if (page.len() as i64) < VERIFY_PAGE {
                break;
            }
        }
        let head = verifier.head();
        if first_bad.is_none() {
            if let Some(missing) = pending.next() {
                first_bad = Some(BadRecord {
                    position: head.size,
                    reason: format!(
                        "the trail has {} records but a checkpoint signed at {} covers {}: records were removed from its end",
                        head.size, missing.signed_at, missing.tree_size
                    ),
                });
            }
        }
        Ok(VerifyReport {
            checked: head.size,
            head,
            checkpoints_matched: matched,
            first_bad,
        })
    }
}

/// Hex of a hash, for answers.
pub fn hash_hex(hash: &Hash) -> String {
    hex(hash)
}
