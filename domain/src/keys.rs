//! Partner signing keys: the public keys an organisation registers to authenticate to the
//! token endpoint, and when an unused one is removed.

use chrono::{DateTime, Duration, Utc};

/// The key types partners may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// RSA, 2048 to 4096 bits, public exponent 65537: RS256, RS384, RS512.
    Rsa,
    /// EC on P-256: ES256.
    EcP256,
    /// Ed25519: EdDSA.
    Ed25519,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::EcP256 => "EC",
            Self::Ed25519 => "OKP",
        }
    }

    pub fn parse(kty: &str) -> Option<Self> {
        match kty {
            "RSA" => Some(Self::Rsa),
            "EC" => Some(Self::EcP256),
            "OKP" => Some(Self::Ed25519),
            _ => None,
        }
    }

    /// The JWS algorithms a key of this type may sign with. Never `none`, never HMAC.
    pub fn algorithms(self) -> &'static [&'static str] {
        match self {
            Self::Rsa => &["RS256", "RS384", "RS512"],
            Self::EcP256 => &["ES256"],
            Self::Ed25519 => &["EdDSA"],
        }
    }
}

/// A registered public key.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerKey {
    pub kid: String,
    pub key_type: KeyType,
    /// The algorithm the partner pinned with `alg`, if any; otherwise any of the type's.
    pub alg: Option<String>,
    /// The public JWK as registered (only public members).
    pub jwk: serde_json::Value,
    pub added_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl PartnerKey {
    /// Whether a JWS algorithm is allowed for this key.
    pub fn allows(&self, alg: &str) -> bool {
        self.key_type.algorithms().contains(&alg)
            && self.alg.as_deref().is_none_or(|pinned| pinned == alg)
    }
}

/// How long a key may go unused before it is flagged, and how long it then stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLifecycle {
    pub unused_after: Duration,
    pub removal_grace: Duration,
}

impl Default for KeyLifecycle {
    fn default() -> Self {
        Self {
            unused_after: Duration::days(90),
            removal_grace: Duration::days(30),
        }
    }
}

impl KeyLifecycle {
    /// When the key is removed unless used before then.
    pub fn removal_at(&self, key: &PartnerKey) -> DateTime<Utc> {
        key.last_used_at.unwrap_or(key.added_at) + self.unused_after + self.removal_grace
    }

    /// `None` while the key is in use; once unused for `unused_after`, the whole days left
    /// before removal (0 on the last day, and when due).
    pub fn days_until_removal(&self, key: &PartnerKey, now: DateTime<Utc>) -> Option<i64> {
        let idle_since = key.last_used_at.unwrap_or(key.added_at);
        if now - idle_since < self.unused_after {
            return None;
        }
        Some((self.removal_at(key) - now).num_days().max(0))
    }

    pub fn is_due(&self, key: &PartnerKey, now: DateTime<Utc>) -> bool {
        now >= self.removal_at(key)
    }

    /// Keys idle since this instant or earlier are due at `now` (what storage re-checks when
    /// it removes them).
    pub fn idle_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.unused_after - self.removal_grace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(added_days_ago: i64, used_days_ago: Option<i64>, now: DateTime<Utc>) -> PartnerKey {
        PartnerKey {
            kid: "k1".into(),
            key_type: KeyType::EcP256,
            alg: None,
            jwk: serde_json::json!({}),
            added_at: now - Duration::days(added_days_ago),
            last_used_at: used_days_ago.map(|d| now - Duration::days(d)),
        }
    }

    #[test]
    fn keys_in_use_have_no_countdown() {
        let now = Utc::now();
        let policy = KeyLifecycle::default();
        assert_eq!(
            policy.days_until_removal(&key(200, Some(10), now), now),
            None
        );
        assert_eq!(policy.days_until_removal(&key(89, None, now), now), None);
    }

    #[test]
    fn unused_keys_count_down_then_fall_due() {
        let now = Utc::now();
        let policy = KeyLifecycle::default();
        assert_eq!(
            policy.days_until_removal(&key(300, Some(90), now), now),
            Some(30)
        );
        assert_eq!(
            policy.days_until_removal(&key(100, None, now), now),
            Some(20)
        );
        assert!(!policy.is_due(&key(100, None, now), now));
        assert_eq!(
            policy.days_until_removal(&key(125, None, now), now),
            Some(0)
        );
        assert_eq!(
            policy.days_until_removal(&key(400, None, now), now),
            Some(0)
        );
        assert!(policy.is_due(&key(120, None, now), now));
    }

    #[test]
    fn idle_before_is_the_instant_is_due_compares_with() {
        let policy = KeyLifecycle::default();
        let now = Utc::now();
        for (added, used) in [
            (100, None),
            (119, None),
            (120, None),
            (121, None),
            (300, Some(119)),
            (300, Some(120)),
            (300, Some(5)),
        ] {
            let key = key(added, used, now);
            let idle_since = key.last_used_at.unwrap_or(key.added_at);
            assert_eq!(
                policy.is_due(&key, now),
                idle_since <= policy.idle_before(now),
                "{added} {used:?}"
            );
        }
    }

    #[test]
    fn algorithms_follow_the_key_type_and_pin() {
        let now = Utc::now();
        let mut rsa = key(1, None, now);
        rsa.key_type = KeyType::Rsa;
        assert!(rsa.allows("RS256") && rsa.allows("RS512"));
        assert!(!rsa.allows("HS256") && !rsa.allows("none") && !rsa.allows("ES256"));
        rsa.alg = Some("RS384".into());
        assert!(rsa.allows("RS384") && !rsa.allows("RS256"));
        let ed = PartnerKey {
            key_type: KeyType::Ed25519,
            ..key(1, None, now)
        };
        assert!(ed.allows("EdDSA") && !ed.allows("ES256"));
    }
}
