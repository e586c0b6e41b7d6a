//! Authentication: partner keys (JWKS uploads), client assertions (RFC 7523), the gateway's
//! own signing keys and access tokens, and reviewers through OpenID Connect.

pub mod assertion;
pub mod checkpoint;
pub mod detached;
pub mod jwk;
pub mod oidc;
pub mod session;
pub mod signing;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}
