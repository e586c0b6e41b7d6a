//! The gateway's own token-signing keys (Ed25519), sealed at rest with the key-encryption
//! key, rotated with an overlap, and the access tokens they sign.

use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use gateway_domain::{
    Actor, AuditAction, NewAuditEvent, Scope, SigningKeyRepository, StoredSigningKey,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{b64, unb64};

/// Encrypts the signing keys' private halves at rest (AES-256-GCM).
pub struct KeyEncryptionKey(SecretSlice<u8>);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(REDACTED)")
    }
}

impl KeyEncryptionKey {
    /// From the configured base64 value, else from the file (created with mode 0600 when it
    /// does not exist, so a fresh machine needs no setup).
    pub fn load(configured: &SecretString, file: &str) -> anyhow::Result<Self> {
        let text = if configured.expose_secret().is_empty() {
            let path = std::path::Path::new(file);
            if !path.exists() {
                create_key_file(path)?;
            }
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the key-encryption key file {file}"))?
        } else {
            configured.expose_secret().to_owned()
        };
        let bytes = STANDARD
            .decode(text.trim())
            .context("the key-encryption key is not base64")?;
        anyhow::ensure!(
            bytes.len() == 32,
            "the key-encryption key must be 32 bytes (got {})",
            bytes.len()
        );
        Ok(Self(SecretSlice::from(bytes)))
    }

    /// A key for another purpose (`label`), derived so it never equals the key itself.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        Sha256::digest(
            [
                b"federation-gateway/",
                label.as_bytes(),
                b"/",
                self.0.expose_secret(),
            ]
            .concat(),
        )
        .into()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(
            self.0.expose_secret(),
        ))
    }

    fn seal(&self, kid: &str, plaintext: &[u8]) -> anyhow::Result<String> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing the signing key failed"))?;
        Ok(STANDARD.encode([nonce.as_slice(), &sealed].concat()))
    }

    fn open(&self, kid: &str, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let bytes = STANDARD
            .decode(sealed)
            .context("sealed key is not base64")?;
        anyhow::ensure!(bytes.len() > 12, "sealed key is too short");
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("signing key {kid} cannot be opened: wrong key-encryption key?")
            })
    }
}

fn create_key_file(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the key-encryption key file {}", path.display()))?;
    file.write_all(STANDARD.encode(key).as_bytes())?;
    tracing::warn!(file = %path.display(), "created a new key-encryption key file; back it up and share it with every replica");
    Ok(())
}

/// PKCS#8 v1 prefix for an Ed25519 private key (RFC 8410), followed by the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

struct LoadedKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_jwk: serde_json::Value,
    retire_after: Option<DateTime<Utc>>,
}

/// RFC 7638 thumbprint of an Ed25519 public key: a stable `kid`.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    b64(&Sha256::digest(canonical.as_bytes()))
}

/// A fresh Ed25519 key, its private half sealed under `kek`.
fn new_key(kek: &KeyEncryptionKey, now: DateTime<Utc>) -> anyhow::Result<StoredSigningKey> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let x = b64(&public);
    let kid = thumbprint(&x);
    let pkcs8 = [ED25519_PKCS8_PREFIX.as_slice(), &seed].concat();
    Ok(StoredSigningKey {
        sealed_private_key: kek.seal(&kid, &pkcs8)?,
        public_jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
        alg: "EdDSA".to_owned(),
        created_at: now,
        retire_after: None,
        kid,
    })
}

/// The claims of a gateway access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub scope: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

impl AccessClaims {
    pub fn scopes(&self) -> Vec<Scope> {
        self.scope.split(' ').filter_map(Scope::parse).collect()
    }
}

/// The key that signs: the one not scheduled to retire (a rotation schedules every other key's
/// retirement in the same transaction), not simply the newest by `created_at`, which is the
/// clock of whichever machine ran the rotation. Should every key be retiring (never after a
/// rotation), the one that stays published longest.
fn active(keys: &[LoadedKey]) -> Option<&LoadedKey> {
    keys.iter()
        .find(|k| k.retire_after.is_none())
        .or_else(|| keys.iter().max_by_key(|k| k.retire_after))
}

/// The gateway's signing keys: the active one signs, all published ones verify. Cached, and
/// reloaded when a token names a key this replica has not seen (another replica rotated).
pub struct SigningKeys {
    repo: Arc<dyn SigningKeyRepository>,
    kek: KeyEncryptionKey,
    issuer: String,
    keys: RwLock<(Vec<LoadedKey>, Instant)>,
    /// How often this replica re-reads the key set even without an unknown `kid`: the longest
    /// another replica's rotation can go unnoticed for signing.
    reload_every: StdDuration,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The `typ` of signed audit checkpoints: never confusable with an access token (`at+jwt`).
pub const CHECKPOINT_TYP: &str = "gw-checkpoint+jws";

/// The least time between reloads caused by a token naming an unknown `kid`.
const UNKNOWN_KID_RELOAD_GAP: StdDuration = StdDuration::from_secs(1);

/// How often a replica re-reads the key set even without an unknown `kid`, unless configured.
pub const DEFAULT_RELOAD_EVERY: StdDuration = StdDuration::from_secs(60);

impl SigningKeys {
    /// Loads the keys, creating the first one if there is none.
    pub fn open(
        repo: Arc<dyn SigningKeyRepository>,
        kek: KeyEncryptionKey,
        issuer: String,
    ) -> anyhow::Result<Self> {
        let this = Self {
            repo,
            kek,
            issuer,
            keys: RwLock::new((Vec::new(), Instant::now())),
            reload_every: DEFAULT_RELOAD_EVERY,
        };
        if this.repo.signing_keys()?.is_empty() {
            // Two replicas starting at once may both create a key; the overlap keeps the one
            // that loses published for longer than any token it signed.
            this.add_key(Utc::now(), Duration::hours(1), Actor::System)?;
        }
        this.reload()?;
        Ok(this)
    }

    /// Re-reads the key set at least this often (`auth.signing_key_reload_seconds`), so a
    /// rotation made elsewhere signs here within that time.
    pub fn reloading_every(mut self, every: StdDuration) -> Self {
        self.reload_every = every.max(StdDuration::from_secs(1));
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Generates a new active key; the others stay published for `overlap`.
    pub fn rotate(&self, overlap: Duration, actor: Actor) -> anyhow::Result<String> {
        let kid = self.add_key(Utc::now(), overlap, actor)?;
        self.reload()?;
        Ok(kid)
    }

    fn add_key(
        &self,
        now: DateTime<Utc>,
        overlap: Duration,
        actor: Actor,
    ) -> anyhow::Result<String> {
        let stored = new_key(&self.kek, now)?;
        let kid = stored.kid.clone();
        let event = NewAuditEvent {
            occurred_at: now,
            actor,
            action: AuditAction::SigningKeyRotated,
            subject_type: "signing_key",
            subject_id: Some(kid.clone()),
            request_id: None,
            details: serde_json::json!({ "alg": "EdDSA", "previous_keys_retire_at": now + overlap }),
        };
        self.repo.add_signing_key(&stored, now + overlap, &event)?;
        Ok(kid)
    }

    fn reload(&self) -> anyhow::Result<()> {
        let mut loaded = Vec::new();
        for key in self.repo.signing_keys()? {
            let pkcs8 = self.kek.open(&key.kid, &key.sealed_private_key)?;
            let x = key.public_jwk["x"]
                .as_str()
                .and_then(unb64)
                .context("signing key without x")?;
            loaded.push(LoadedKey {
                encoding: EncodingKey::from_ed_der(&pkcs8),
                decoding: DecodingKey::from_ed_der(&x),
                public_jwk: key.public_jwk,
                retire_after: key.retire_after,
                kid: key.kid,
            });
        }
        anyhow::ensure!(!loaded.is_empty(), "no signing key");
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = (loaded, Instant::now());
        Ok(())
    }

    fn reload_if_stale(&self) {
        let stale = self
            .keys
            .read()
            .map(|k| k.1.elapsed() > self.reload_every)
            .unwrap_or(true);
        if stale {
            if let Err(error) = self.reload() {
                tracing::error!(error = %format!("{error:#}"), "reloading signing keys failed; keeping the cached ones");
            }
        }
    }

    /// The published key set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        self.reload_if_stale();
        let now = Utc::now();
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let published: Vec<_> = keys
            .0
            .iter()
            .filter(|k| k.retire_after.is_none_or(|t| t > now))
            .map(|k| k.public_jwk.clone())
            .collect();
        serde_json::json!({ "keys": published })
    }

    /// Signs an access token for `subject` with `scopes`, valid for `lifetime`.
    pub fn issue(
        &self,
        subject: &str,
        scopes: &[Scope],
        lifetime: Duration,
    ) -> anyhow::Result<(String, AccessClaims)> {
        self.reload_if_stale();
        let now = Utc::now();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.issuer.clone(),
            sub: subject.to_owned(),
            scope: Scope::join(scopes),
            iat: now.timestamp(),
            exp: (now + lifetime).timestamp(),
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let active = active(&keys.0).context("no signing key")?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(active.kid.clone());
        header.typ = Some("at+jwt".to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &active.encoding)?;
        Ok((token, claims))
    }

    /// Signs an audit checkpoint with the active key: a compact JWS whose `typ`
    /// (`gw-checkpoint+jws`) no access-token check accepts. Returns the JWS, the key id and
    /// the public JWK (kept for ever, so old checkpoints stay verifiable).
    pub fn sign_checkpoint(
        &self,
        payload: &serde_json::Value,
    ) -> anyhow::Result<(String, String, serde_json::Value)> {
        self.reload_if_stale();
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let active = active(&keys.0).context("no signing key")?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(active.kid.clone());
        header.typ = Some(CHECKPOINT_TYP.to_owned());
        let jws = jsonwebtoken::encode(&header, payload, &active.encoding)?;
        Ok((jws, active.kid.clone(), active.public_jwk.clone()))
    }

    /// Verifies a gateway access token: our signature, issuer, audience, expiry. May read the
    /// database (key reloads): call it from a blocking context.
    pub fn verify(&self, token: &str) -> Option<AccessClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some("at+jwt") {
            return None;
        }
        let kid = header.kid?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        self.reload_if_stale();
        let now = Utc::now();
        let attempt = || {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            // A retired key verifies nothing, even while still cached.
            keys.0
                .iter()
                .find(|k| k.kid == kid && k.retire_after.is_none_or(|t| t > now))
                .map(|k| jsonwebtoken::decode::<AccessClaims>(token, &k.decoding, &validation))
        };
        let result = match attempt() {
            Some(result) => result,
            None => {
                // Perhaps another replica rotated: look again, but at most once a second, so
                // tokens naming made-up kids cannot turn into a query each.
                let recently = self
                    .keys
                    .read()
                    .map(|k| k.1.elapsed() < UNKNOWN_KID_RELOAD_GAP)
                    .unwrap_or(false);
                if recently {
                    return None;
                }
                self.reload().ok()?;
                attempt()?
            }
        };
        result.ok().map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_domain::RepositoryError;

    /// Stored keys as given, in the repository's order (newest `created_at` first).
    struct FixedKeys(Vec<StoredSigningKey>);

    impl SigningKeyRepository for FixedKeys {
        fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, RepositoryError> {
            let mut keys = self.0.clone();
            keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
            Ok(keys)
        }
        fn add_signing_key(
            &self,
            _: &StoredSigningKey,
            _: DateTime<Utc>,
            _: &NewAuditEvent,
        ) -> Result<(), RepositoryError> {
            unreachable!("the test stores its keys itself")
        }
        fn prune_signing_keys(&self, _: DateTime<Utc>) -> Result<usize, RepositoryError> {
            Ok(0)
        }
    }

    fn kek() -> KeyEncryptionKey {
        KeyEncryptionKey(SecretSlice::from(vec![7u8; 32]))
    }

    #[test]
    fn the_key_not_scheduled_to_retire_signs_even_when_an_older_clock_made_it() {
        let now = Utc::now();
        // A rotation run on a machine whose clock lags: the new key looks older than the
        // one it replaced, which is retiring.
        let mut replaced = new_key(&kek(), now).unwrap();
        replaced.retire_after = Some(now + Duration::hours(24));
        let current = new_key(&kek(), now - Duration::minutes(10)).unwrap();
        let repo = Arc::new(FixedKeys(vec![replaced.clone(), current.clone()]));
        assert_eq!(
            repo.signing_keys().unwrap()[0].kid,
            replaced.kid,
            "newest first"
        );
        let keys = SigningKeys::open(repo, kek(), "https://gw.test".into()).unwrap();
        let (token, _) = keys
            .issue("org", &[Scope::OrganisationManage], Duration::minutes(5))
            .unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        assert_eq!(kid, current.kid);
        let (_, checkpoint_kid, _) = keys.sign_checkpoint(&serde_json::json!({})).unwrap();
        assert_eq!(checkpoint_kid, current.kid);
        // Both stay published and both verify until the old one retires.
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(keys.verify(&token).is_some());
    }

    #[test]
    fn with_every_key_retiring_the_last_to_retire_signs() {
        let now = Utc::now();
        let mut sooner = new_key(&kek(), now).unwrap();
        sooner.retire_after = Some(now + Duration::hours(1));
        let mut later = new_key(&kek(), now - Duration::hours(1)).unwrap();
        later.retire_after = Some(now + Duration::hours(5));
        let repo = Arc::new(FixedKeys(vec![sooner, later.clone()]));
        let keys = SigningKeys::open(repo, kek(), "https://gw.test".into()).unwrap();
        let (token, _) = keys
            .issue("org", &[Scope::OrganisationManage], Duration::minutes(5))
            .unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().kid.unwrap(),
            later.kid
        );
    }

    #[test]
    fn sealing_round_trips_and_binds_the_kid() {
        let kek = KeyEncryptionKey(SecretSlice::from(vec![7u8; 32]));
        let sealed = kek.seal("kid-1", b"private").unwrap();
        assert_eq!(kek.open("kid-1", &sealed).unwrap(), b"private");
        assert!(
            kek.open("kid-2", &sealed).is_err(),
            "a sealed key moved to another kid does not open"
        );
        let other = KeyEncryptionKey(SecretSlice::from(vec![8u8; 32]));
        assert!(other.open("kid-1", &sealed).is_err());
        assert!(!format!("{kek:?}").contains('7'));
    }
}
