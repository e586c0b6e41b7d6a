//! Registration access tokens: `gwrat_<selector>.<secret>`. The selector finds the stored
//! credential; only the SHA-256 of the secret is stored, and it is compared in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gateway_domain::CredentialDigest;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "gwrat_";
const SELECTOR_BYTES: usize = 16;
/// 256 bits of secret.
const SECRET_BYTES: usize = 32;

/// A freshly minted token: shown to its owner once, stored only as its digest.
#[derive(Debug)]
pub struct MintedToken {
    pub token: SecretString,
    pub digest: CredentialDigest,
}

pub fn mint() -> MintedToken {
    let mut rng = rand::rng();
    let mut selector = [0u8; SELECTOR_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut selector);
    rng.fill_bytes(&mut secret);
    let selector = URL_SAFE_NO_PAD.encode(selector);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    MintedToken {
        token: SecretString::from(format!("{PREFIX}{selector}.{secret}")),
        digest: CredentialDigest {
            secret_sha256: sha256_hex(secret.as_bytes()),
            selector,
        },
    }
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A presented token split into its parts, if it has the right shape.
#[derive(Debug)]
pub struct PresentedToken {
    pub selector: String,
    secret: SecretString,
}

impl PresentedToken {
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(PREFIX)?;
        let (selector, secret) = rest.split_once('.')?;
        let well_formed = |part: &str, bytes: usize| {
            URL_SAFE_NO_PAD
                .decode(part)
                .is_ok_and(|decoded| decoded.len() == bytes)
        };
        (well_formed(selector, SELECTOR_BYTES) && well_formed(secret, SECRET_BYTES)).then(|| Self {
            selector: selector.to_owned(),
            secret: SecretString::from(secret.to_owned()),
        })
    }

    /// Whether this token's secret hashes to `stored_sha256`, compared in constant time.
    pub fn matches(&self, stored_sha256: &str) -> bool {
        let presented = sha256_hex(self.secret.expose_secret().as_bytes());
        presented.as_bytes().ct_eq(stored_sha256.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_against_its_digest_only() {
        let minted = mint();
        let presented = PresentedToken::parse(minted.token.expose_secret()).unwrap();
        assert_eq!(presented.selector, minted.digest.selector);
        assert!(presented.matches(&minted.digest.secret_sha256));
        assert!(!presented.matches(&mint().digest.secret_sha256));
        assert!(!minted
            .digest
            .secret_sha256
            .contains(minted.token.expose_secret()));
    }

    #[test]
    fn tokens_are_unique_and_carry_256_bits() {
        let a = mint();
        let b = mint();
        assert_ne!(a.token.expose_secret(), b.token.expose_secret());
        let secret = a
            .token
            .expose_secret()
            .rsplit('.')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len() * 8, 256);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for raw in [
            "",
            "gwrat_",
            "gwrat_abc.def",
            "Bearer x",
            "gwrat_AAAAAAAAAAAAAAAAAAAAAA",
            "xx_AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(PresentedToken::parse(raw).is_none(), "{raw}");
        }
    }
}
