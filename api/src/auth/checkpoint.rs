//! Checkpoint signatures: which public keys are trusted to have signed them (MAC'd under a key
//! derived from the key-encryption key, so a database writer cannot add one), verifying a
//! stored or kept checkpoint against them, and reading an auditor's kept checkpoint.

use anyhow::Context;
use gateway_domain::services::audit::{CheckpointVerifier, SignedHead};
use gateway_domain::{AuditKey, Checkpoint};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::Sha256;

use crate::auth::signing::CHECKPOINT_TYP;

/// MACs and checks the audit keys stored in the database.
#[derive(Clone)]
pub struct AuditKeyRing {
    mac_key: [u8; 32],
}

impl std::fmt::Debug for AuditKeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKeyRing(REDACTED)")
    }
}

impl AuditKeyRing {
    pub fn new(mac_key: [u8; 32]) -> Self {
        Self { mac_key }
    }

    fn hmac(&self, kid: &str, jwk: &Value) -> Hmac<Sha256> {
        #[allow(clippy::expect_used)] // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key).expect("an HMAC key");
        mac.update(kid.as_bytes());
        mac.update(b"\n");
        mac.update(jwk.to_string().as_bytes());
        mac
    }

    /// The MAC stored with a key.
    pub fn mac(&self, kid: &str, jwk: &Value) -> String {
        gateway_domain::audit::hex(&self.hmac(kid, jwk).finalize().into_bytes())
    }

    /// The stored keys whose MAC holds; the others were not put there by a gateway.
    pub fn trusted(&self, keys: Vec<AuditKey>) -> Vec<Value> {
        keys.into_iter()
            .filter(|key| {
                let valid = gateway_domain::audit::unhex(&key.mac).is_some_and(|mac| {
                    self.hmac(&key.kid, &key.jwk).verify_slice(&mac).is_ok()
                });
                if !valid {
                    tracing::error!(kid = %key.kid, "an audit key in the database has no valid MAC: ignored (was it planted?)");
                }
                valid
            })
            .map(|key| key.jwk)
            .collect()
    }
}

/// Verifies checkpoint JWSs (EdDSA, `typ: gw-checkpoint+jws`) with a set of public JWKs.
#[derive(Debug, Clone)]
pub struct KeysVerifier {
    keys: Vec<Value>,
}

impl KeysVerifier {
    pub fn new(keys: Vec<Value>) -> Self {
        Self { keys }
    }

    /// The signed claims of `jws`, if one of the keys signed it as a checkpoint.
    pub fn claims(&self, jws: &str) -> anyhow::Result<SignedHead> {
        let header = jsonwebtoken::decode_header(jws).context("not a JWS")?;
        anyhow::ensure!(
            header.alg == Algorithm::EdDSA && header.typ.as_deref() == Some(CHECKPOINT_TYP),
            "not a checkpoint (alg EdDSA, typ {CHECKPOINT_TYP})"
        );
        let kid = header.kid.context("the checkpoint names no key")?;
        let jwk = self
            .keys
            .iter()
            .find(|k| k["kid"].as_str() == Some(kid.as_str()))
            .with_context(|| format!("no trusted audit key {kid}"))?;
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
        Ok(SignedHead {
            tree_size: claims["tree_size"]
                .as_i64()
                .context("the checkpoint claims lack tree_size")?,
            root_hash: text_of("root_hash")?,
            chain_hash: text_of("chain_hash")?,
            signed_at: claims["iat"]
                .as_i64()
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .context("the checkpoint claims lack iat")?,
        })
    }
}

impl CheckpointVerifier for KeysVerifier {
    fn verify(&self, checkpoint: &Checkpoint) -> Result<SignedHead, String> {
        self.claims(&checkpoint.jws).map_err(|e| format!("{e:#}"))
    }
}

/// Reads a checkpoint as `GET /v1/audit/checkpoints/latest` answered it and verifies its JWS
/// with one of `keys` (JWKs, e.g. a kept `/.well-known/audit-keys.json`). Only the signed
/// claims count, never the document's other fields.
pub fn read_kept(text: &str, keys: &[Value]) -> anyhow::Result<SignedHead> {
    let document: Value = serde_json::from_str(text).context("the checkpoint is not JSON")?;
    let jws = document["jws"]
        .as_str()
        .context("the checkpoint has no jws")?;
    KeysVerifier::new(keys.to_vec()).claims(jws)
}
