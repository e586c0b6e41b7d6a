//! Partner keys (JWKS).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A JSON Web Key Set (RFC 7517) of public signing keys.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "2026-11-key-1", "alg": "EdDSA", "use": "sig", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}))]
pub struct JwksRequest {
    /// 0 to 10 public JWKs: RSA (2048 bits or more; RS256/RS384/RS512), EC P-256 (ES256) or
    /// OKP Ed25519 (EdDSA), each with a unique `kid`. Private members (`d`, `p`, `q`, ...) are
    /// refused.
    #[schema(value_type = Vec<Object>, max_items = 10)]
    pub keys: Vec<serde_json::Value>,
}

/// One registered key and its state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartnerKeyResponse {
    pub kid: String,
    /// The public JWK as stored.
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
    pub added_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Present once the key has gone unused for the configured period: whole days until
    /// `federation-gateway maintenance` removes it. Using the key clears it.
    pub days_until_removal: Option<i64>,
}

/// The organisation's registered keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartnerKeySetResponse {
    pub keys: Vec<PartnerKeyResponse>,
}
