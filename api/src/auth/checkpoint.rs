//! Kept checkpoints: an auditor's copy of a signed tree head, checked before it is trusted.

use anyhow::Context;
use gateway_domain::Checkpoint;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::auth::signing::CHECKPOINT_TYP;

/// Reads a checkpoint as `GET /v1/audit/checkpoints/latest` answered it, and verifies its JWS
/// (EdDSA, `typ: gw-checkpoint+jws`) with one of `keys` (JWKs, e.g. from
/// `/.well-known/audit-keys.json`). The signed claims win over the document's fields.
pub fn read_kept(text: &str, keys: &[Value]) -> anyhow::Result<Checkpoint> {
    let document: Value = serde_json::from_str(text).context("the checkpoint is not JSON")?;
    let jws = document["jws"]
        .as_str()
        .context("the checkpoint has no jws")?;
    let header = jsonwebtoken::decode_header(jws).context("the checkpoint's jws is not a JWS")?;
    anyhow::ensure!(
        header.alg == Algorithm::EdDSA && header.typ.as_deref() == Some(CHECKPOINT_TYP),
        "the jws is not a checkpoint (alg EdDSA, typ {CHECKPOINT_TYP})"
    );
    let kid = header.kid.context("the checkpoint's jws names no key")?;
    let jwk = keys
        .iter()
        .find(|k| k["kid"].as_str() == Some(kid.as_str()))
        .with_context(|| format!("no audit key {kid} to verify the checkpoint with"))?;
    let key = DecodingKey::from_ed_components(jwk["x"].as_str().context("the key has no x")?)
        .context("the audit key is not an Ed25519 key")?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(jws, &key, &validation)
        .context("the checkpoint's signature does not verify")?
        .claims;
    let text_of = |name: &str| {
        claims[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the checkpoint claims lack {name}"))
    };
    Ok(Checkpoint {
        tree_size: claims["tree_size"]
            .as_i64()
            .context("the checkpoint claims lack tree_size")?,
        root_hash: text_of("root_hash")?,
        chain_hash: text_of("chain_hash")?,
        signed_at: claims["iat"]
            .as_i64()
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .context("the checkpoint claims lack iat")?,
        kid,
        jws: jws.to_owned(),
    })
}
