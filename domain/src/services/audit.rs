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

/// The claims of a checkpoint whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub tree_size: i64,
    pub root_hash: String,
    pub chain_hash: String,
    pub signed_at: chrono::DateTime<chrono::Utc>,
}

/// Checks a stored checkpoint's signature with keys a database writer cannot have planted;
/// its signed claims, not the stored columns, are what verification compares.
pub trait CheckpointVerifier {
    fn verify(&self, checkpoint: &Checkpoint) -> Result<SignedHead, String>;
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
        let (stored_leaf, path, root) = self.with_nodes(|nodes| {
            (
                nodes.node((0, index)),
                merkle::inclusion_proof(h, nodes, index, n),
                merkle::root(h, nodes, n),
            )
        })?;
        // The leaf comes from the record itself: a proof is never served from a stored tree
        // that no longer matches the record.
        let record = self
            .audit
            .sealed_records(
                &AuditFilter::default(),
                position.checked_sub(1).filter(|p| *p >= 0),
                1,
            )?
            .into_iter()
            .next()
            .filter(|r| r.event.position == Some(position))
            .ok_or_else(|| {
                ServiceError::Storage(RepositoryError::Corrupt(format!(
                    "audit record {position} is missing"
                )))
            })?;
        let leaf = merkle::leaf_hash(h, &crate::audit::canonical(position, &record.event));
        if leaf != stored_leaf {
            return Err(ServiceError::Storage(RepositoryError::Corrupt(format!(
                "the stored Merkle leaf of record {position} does not match the record"
            ))));
        }
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

    /// The Merkle root of the first `size` records, from the stored subtrees.
    pub fn stored_root(&self, size: i64) -> ServiceResult<Hash> {
        let h = self.hasher.as_ref();
        self.with_nodes(|nodes| merkle::root(h, nodes, size as u64))
    }

    /// Reads the whole sealed trail in order and checks every chain hash, that positions are
    /// contiguous, that each record's organisation index is the record's own, and, at every
    /// stored checkpoint (its signature checked by `verifier`) and at `kept` (a checkpoint an
    /// auditor kept elsewhere, already checked against keys they kept), the recomputed root
    /// and chain hash against the signed ones and against the stored tree. A trail shorter
    /// than a checkpoint was cut short.
    pub fn verify_trail(
        &self,
        kept: Option<&SignedHead>,
        verifier: &dyn CheckpointVerifier,
    ) -> ServiceResult<VerifyReport> {
        let mut heads: Vec<SignedHead> = Vec::new();
        let mut first_bad = None;
        for checkpoint in self.audit.checkpoints()? {
            match verifier.verify(&checkpoint) {
                Ok(head) if head.tree_size == checkpoint.tree_size => heads.push(head),
                Ok(_) | Err(_) if first_bad.is_none() => {
                    first_bad = Some(BadRecord {
                        position: checkpoint.tree_size - 1,
                        reason: format!(
                            "the checkpoint stored for {} records is not validly signed by an audit key",
                            checkpoint.tree_size
                        ),
                    });
                }
                _ => {}
            }
        }
        if let Some(kept) = kept {
            heads.retain(|c| c.tree_size != kept.tree_size);
            heads.push(kept.clone());
        }
        heads.sort_by_key(|c| c.tree_size);
        let h = self.hasher.as_ref();
        let mut verifier = ChainVerifier::new(h);
        let mut matched = Vec::new();
        let mut pending = heads.iter().filter(|c| c.tree_size > 0).peekable();
        let mut after = None;
        let bad_tree = |size: i64| BadRecord {
            position: size - 1,
            reason: format!(
                "the stored Merkle tree of the first {size} records does not match the records"
            ),
        };
        'pages: while first_bad.is_none() {
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
                if record.organisation_id != record.event.organisation() {
                    first_bad = Some(BadRecord {
                        position: record.event.position.unwrap_or_default(),
                        reason: "the record's organisation index was altered".to_owned(),
                    });
                    break 'pages;
                }
                let head = verifier.head();
                while let Some(signed) = pending.next_if(|c| c.tree_size == head.size) {
                    let expected = (unhex(&signed.root_hash), unhex(&signed.chain_hash));
                    if expected != (Some(head.root), Some(head.chain_hash)) {
                        first_bad = Some(BadRecord {
                            position: signed.tree_size - 1,
                            reason: format!(
                                "the first {} records do not match the checkpoint signed at {} (the trail was rewritten)",
                                signed.tree_size, signed.signed_at
                            ),
                        });
                        break 'pages;
                    }
                    if self.stored_root(head.size)? != head.root {
                        first_bad = Some(bad_tree(head.size));
                        break 'pages;
                    }
                    matched.push(signed.tree_size);
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
            } else if head.size > 0 && self.stored_root(head.size)? != head.root {
                first_bad = Some(bad_tree(head.size));
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
