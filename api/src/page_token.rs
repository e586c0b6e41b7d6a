//! Opaque page tokens (after dropshot's): a keyset position, serialised with a version,
//! bound to the caller and to the query it pages through, and MAC'd so nobody can forge or
//! move one. Shared by every replica through the key-encryption key they share.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ApiError;

const VERSION: u8 = 1;

/// The MAC key for page tokens.
#[derive(Clone)]
pub struct PageTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(REDACTED)")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    v: u8,
    /// What is paged ("audit", ...).
    k: String,
    /// Who may use it.
    c: String,
    /// The query it belongs to (a digest of the filters).
    q: String,
    /// The keyset position: the last item of the previous page.
    p: i64,
    /// A second keyset component, for listings that need one (the id within a snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<String>,
}

/// What a page token holds, once its MAC, kind and caller are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The query it was issued for: the caller compares it with the current one.
    pub query: String,
    pub position: i64,
    pub after: Option<String>,
}

/// A cursor that is well-formed as a string but not one of ours, or not for this caller or
/// query, breaks a rule no schema can state: 422 naming the field and the rule.
fn invalid(why: &str) -> ApiError {
    ApiError::Validation(gateway_domain::ValidationErrors(vec![
        gateway_domain::FieldError::new(
            "cursor",
            "cursor_valid",
            format!("{why}; start again without a cursor"),
        ),
    ]))
}

impl PageTokens {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn hmac(&self, body: &str) -> Hmac<Sha256> {
        #[allow(clippy::expect_used)] // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("an HMAC key");
        mac.update(body.as_bytes());
        mac
    }

    /// A token for the page after `position`.
    pub fn issue(&self, kind: &str, caller: &str, query: &str, position: i64) -> String {
        self.issue_after(kind, caller, query, position, None)
    }

    /// A token for the page after `(position, after)`.
    pub fn issue_after(
        &self,
        kind: &str,
        caller: &str,
        query: &str,
        position: i64,
        after: Option<&str>,
    ) -> String {
        let body = Body {
            v: VERSION,
            k: kind.to_owned(),
            c: caller.to_owned(),
            q: query.to_owned(),
            p: position,
            a: after.map(str::to_owned),
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap_or_default());
        let mac = URL_SAFE_NO_PAD.encode(self.hmac(&body).finalize().into_bytes());
        format!("{body}.{mac}")
    }

    /// The position in `token`, if it is ours, unaltered, and was issued to `caller` for the
    /// same `kind` and `query`.
    pub fn open(
        &self,
        token: &str,
        kind: &str,
        caller: &str,
        query: &str,
    ) -> Result<i64, ApiError> {
        let opened = self.open_any_query(token, kind, caller)?;
        if opened.query != query {
            return Err(invalid("the cursor belongs to other filters"));
        }
        Ok(opened.position)
    }

    /// What `token` holds, if it is ours, unaltered, and was issued to `caller` for `kind`;
    /// the caller decides what a different query means.
    pub fn open_any_query(
        &self,
        token: &str,
        kind: &str,
        caller: &str,
    ) -> Result<Opened, ApiError> {
        let (body, mac) = token
            .split_once('.')
            .ok_or_else(|| invalid("not a cursor this gateway issued"))?;
        let presented = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| invalid("not a cursor this gateway issued"))?;
        self.hmac(body)
            .verify_slice(&presented)
            .map_err(|_| invalid("the cursor was altered or not issued by this gateway"))?;
        let body: Body = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| invalid("not a cursor this gateway issued"))?;
        if body.v != VERSION || body.k != kind {
            return Err(invalid("the cursor belongs to another listing"));
        }
        if body.c != caller {
            return Err(invalid("the cursor was issued to someone else"));
        }
        Ok(Opened {
            query: body.q,
            position: body.p,
            after: body.a,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_tampering_and_other_callers() {
        let tokens = PageTokens::new([3; 32]);
        let token = tokens.issue("audit", "auditor1", "q1", 41);
        assert_eq!(tokens.open(&token, "audit", "auditor1", "q1").unwrap(), 41);
        assert!(tokens.open(&token, "audit", "auditor2", "q1").is_err());
        assert!(tokens.open(&token, "audit", "auditor1", "q2").is_err());
        assert!(tokens.open(&token, "feed", "auditor1", "q1").is_err());
        let (body, mac) = token.split_once('.').unwrap();
        let forged_body = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(
                &serde_json::json!({"v":1,"k":"audit","c":"auditor1","q":"q1","p":0}),
            )
            .unwrap(),
        );
        assert!(tokens
            .open(&format!("{forged_body}.{mac}"), "audit", "auditor1", "q1")
            .is_err());
        assert!(tokens.open(body, "audit", "auditor1", "q1").is_err());
        assert!(PageTokens::new([4; 32])
            .open(&token, "audit", "auditor1", "q1")
            .is_err());
    }
}
