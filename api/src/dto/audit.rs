//! The audit trail for auditors: filtered pages and exports, checkpoints, proofs, verification.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::AuditEventResponse;

/// Filters and paging for the sealed trail.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events about this organisation (its id).
    pub organisation: Option<uuid::Uuid>,
    /// Only events by this actor (an organisation id, a reviewer's subject, an operator).
    pub actor: Option<String>,
    /// Only this action, e.g. `agreement.approved`.
    pub action: Option<String>,
    /// Only events at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub to: Option<DateTime<Utc>>,
    /// From the previous page's `next_cursor` (opaque; bound to you and to these filters).
    pub cursor: Option<String>,
    /// 1 to 10000. JSON pages: default 100, at most 500 (a larger limit gets 500). CSV and
    /// JSON Lines exports: default 1000.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// A page of the sealed trail, by position.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditListResponse {
    pub items: Vec<AuditEventResponse>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A signed tree head.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckpointResponse {
    pub tree_size: i64,
    /// Hex RFC 9162 Merkle root of the first `tree_size` records.
    pub root_hash: String,
    /// Hex chain hash of record `tree_size - 1`.
    pub chain_hash: String,
    pub signed_at: DateTime<Utc>,
    pub kid: String,
    /// Compact JWS (EdDSA, `typ: gw-checkpoint+jws`) over `{iss, tree_size, root_hash,
    /// chain_hash, iat}`; verify it with `/.well-known/audit-keys.json`. Keep it: a later
    /// consistency proof shows the trail was only appended to since.
    pub jws: String,
}

impl From<gateway_domain::Checkpoint> for CheckpointResponse {
    fn from(c: gateway_domain::Checkpoint) -> Self {
        Self {
            tree_size: c.tree_size,
            root_hash: c.root_hash,
            chain_hash: c.chain_hash,
            signed_at: c.signed_at,
            kid: c.kid,
            jws: c.jws,
        }
    }
}

/// Which record, in which tree.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    #[param(minimum = 0)]
    pub position: i64,
    #[param(minimum = 1)]
    pub tree_size: i64,
}

/// An RFC 9162 inclusion proof.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InclusionProofResponse {
    pub position: i64,
    pub tree_size: i64,
    /// Hex SHA-256(0x00 || canonical record).
    pub leaf_hash: String,
    /// Hex sibling hashes, leaf to root.
    pub audit_path: Vec<String>,
    /// Hex Merkle root of `tree_size` records.
    pub root_hash: String,
}

/// Which two tree sizes.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    #[param(minimum = 1)]
    pub from: i64,
    #[param(minimum = 1)]
    pub to: i64,
}

/// An RFC 9162 consistency proof.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsistencyProofResponse {
    pub from: i64,
    pub to: i64,
    pub from_root: String,
    pub to_root: String,
    /// Hex hashes of the proof.
    pub proof: Vec<String>,
}

/// The first record that failed verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BadRecordResponse {
    pub position: i64,
    pub reason: String,
}

/// What verification of the whole trail found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// True when every record and every checkpoint checked out.
    pub intact: bool,
    /// How many records were checked.
    pub checked: i64,
    /// Hex Merkle root and chain hash of what was checked.
    pub root_hash: String,
    pub chain_hash: String,
    /// The sizes of the stored checkpoints whose roots matched.
    pub checkpoints_matched: Vec<i64>,
    pub first_bad: Option<BadRecordResponse>,
}
