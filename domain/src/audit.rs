//! Audit events: who did what to which subject, when. Append-only; each stored event carries
//! room for the hash chain that makes the trail tamper-evident.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::organisation::OrganisationId;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An unauthenticated caller of a public endpoint (registration).
    Anonymous,
    /// An organisation, authenticated by its registration token or access token.
    Organisation(OrganisationId),
    /// An operator running a command of the `federation-gateway` binary.
    Operator(String),
    /// A national reviewer, by the identity provider's subject.
    Reviewer(String),
    /// The internal directory publisher, by its client id.
    Publisher(String),
    /// The gateway itself (maintenance).
    System,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Organisation(_) => "organisation",
            Self::Operator(_) => "operator",
            Self::Reviewer(_) => "reviewer",
            Self::Publisher(_) => "publisher",
            Self::System => "system",
        }
    }

    pub fn id(&self) -> Option<String> {
        match self {
            Self::Anonymous | Self::System => None,
            Self::Organisation(id) => Some(id.to_string()),
            Self::Operator(name) | Self::Reviewer(name) | Self::Publisher(name) => {
                Some(name.clone())
            }
        }
    }
}

/// What happened. The string forms are stored and must stay stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    OrganisationRegistered,
    OrganisationUpdated,
    SecureDomainsImported,
    KeysReplaced,
    KeysRemoved,
    TokenIssued,
    AssertionRejected,
    ReviewerLogin,
    ReviewerLoginFailed,
    /// A reviewer signed out: the session was revoked.
    ReviewerLogout,
    SigningKeyRotated,
    OrganisationRejected,
    EvidenceSubmitted,
    EvidenceJudged,
    AgreementDrafted,
    AgreementChanged,
    AgreementSigned,
    AgreementSubmitted,
    AgreementChecked,
    AgreementApproved,
    AgreementRejected,
    AgreementSuspended,
    AgreementReinstated,
    AgreementRevoked,
    AgreementExpired,
    DataDisclosed,
    DomainVerified,
    DomainVerificationFailed,
    DomainRecordMissing,
    DomainRecordRestored,
    DomainUnverified,
    RegistrationTokenRotated,
    RegistrationTokenRevoked,
    RegistrationTokenIssued,
    /// The publisher applied a batch of directory changes.
    DirectoryChanged,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrganisationRegistered => "organisation.registered",
            Self::OrganisationUpdated => "organisation.updated",
            Self::SecureDomainsImported => "secure_domains.imported",
            Self::KeysReplaced => "keys.replaced",
            Self::KeysRemoved => "keys.removed",
            Self::TokenIssued => "token.issued",
            Self::AssertionRejected => "token.assertion_rejected",
            Self::ReviewerLogin => "reviewer.login",
            Self::ReviewerLoginFailed => "reviewer.login_failed",
            Self::ReviewerLogout => "reviewer.logout",
            Self::SigningKeyRotated => "signing_key.rotated",
            Self::OrganisationRejected => "organisation.rejected",
            Self::EvidenceSubmitted => "evidence.submitted",
            Self::EvidenceJudged => "evidence.judged",
            Self::AgreementDrafted => "agreement.drafted",
            Self::AgreementChanged => "agreement.changed",
            Self::AgreementSigned => "agreement.signed",
            Self::AgreementSubmitted => "agreement.submitted",
            Self::AgreementChecked => "agreement.checked",
            Self::AgreementApproved => "agreement.approved",
            Self::AgreementRejected => "agreement.rejected",
            Self::AgreementSuspended => "agreement.suspended",
            Self::AgreementReinstated => "agreement.reinstated",
            Self::AgreementRevoked => "agreement.revoked",
            Self::AgreementExpired => "agreement.expired",
            Self::DataDisclosed => "data.disclosed",
            Self::DomainVerified => "domain.verified",
            Self::DomainVerificationFailed => "domain.verification_failed",
            Self::DomainRecordMissing => "domain.record_missing",
            Self::DomainRecordRestored => "domain.record_restored",
            Self::DomainUnverified => "domain.unverified",
            Self::RegistrationTokenRotated => "registration_token.rotated",
            Self::RegistrationTokenRevoked => "registration_token.revoked",
            Self::RegistrationTokenIssued => "registration_token.issued",
            Self::DirectoryChanged => "directory.changed",
        }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub action: AuditAction,
    pub subject_type: &'static str,
    pub subject_id: Option<String>,
    /// The request that caused it, to join the audit trail with the logs.
    pub request_id: Option<String>,
    /// What changed; never a secret.
    pub details: serde_json::Value,
}

/// The most characters an audit record keeps of any one string in its details: a backstop
/// under every writer, so no caller can make the trail store a body's worth of text.
pub const MAX_DETAIL_CHARS: usize = 1024;
/// The most characters kept of a record's subject, actor or request id.
pub const MAX_ID_CHARS: usize = 256;
/// How much of an unauthenticated caller's input (a claimed client id, a provider's error
/// code) a record keeps: enough to recognise it, never enough to store a payload.
pub const EXCERPT_CHARS: usize = 64;

/// At most `max` characters of `raw`, marked with a trailing `…` when cut.
pub fn excerpt(raw: &str, max: usize) -> String {
    match raw.char_indices().nth(max) {
        None => raw.to_owned(),
        Some((cut, _)) => {
            let mut short = raw[..cut.min(raw.len())].to_owned();
            short.pop();
            short.push('…');
            short
        }
    }
}

/// `details` with every string (values and keys, at any depth) cut to [`MAX_DETAIL_CHARS`].
pub fn bound_details(details: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match details {
        Value::String(s) => Value::String(excerpt(s, MAX_DETAIL_CHARS)),
        Value::Array(items) => Value::Array(items.iter().map(bound_details).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (excerpt(k, MAX_DETAIL_CHARS), bound_details(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl NewAuditEvent {
    /// The event as it may be stored: every caller-reachable string bounded.
    pub fn bounded(&self) -> Self {
        Self {
            occurred_at: self.occurred_at,
            actor: match &self.actor {
                Actor::Operator(n) => Actor::Operator(excerpt(n, MAX_ID_CHARS)),
                Actor::Reviewer(n) => Actor::Reviewer(excerpt(n, MAX_ID_CHARS)),
                Actor::Publisher(n) => Actor::Publisher(excerpt(n, MAX_ID_CHARS)),
                other => other.clone(),
            },
            action: self.action,
            subject_type: self.subject_type,
            subject_id: self.subject_id.as_deref().map(|s| excerpt(s, MAX_ID_CHARS)),
            request_id: self.request_id.as_deref().map(|s| excerpt(s, MAX_ID_CHARS)),
            details: bound_details(&self.details),
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// The insertion order of the row (a storage detail: rows may commit out of this order).
    pub seq: i64,
    /// Where the sequencer sealed it in the trail (0, 1, 2, ...), in commit order; `None`
    /// until sealed. Readers of the trail only ever see sealed records.
    pub position: Option<i64>,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub subject_type: String,
    pub subject_id: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// The organisation the record is about, for auditors' filters: the subject when it is an
    /// organisation, else the acting organisation, else `details.organisation_id`.
    pub fn organisation(&self) -> Option<String> {
        organisation_of(
            &self.subject_type,
            self.subject_id.as_deref(),
            &self.actor_type,
            self.actor_id.as_deref(),
            &self.details,
        )
    }
}

impl NewAuditEvent {
    /// See [`AuditEvent::organisation`]; the same rule, before the record is stored.
    pub fn organisation(&self) -> Option<String> {
        organisation_of(
            self.subject_type,
            self.subject_id.as_deref(),
            self.actor.kind(),
            self.actor.id().as_deref(),
            &self.details,
        )
    }
}

fn organisation_of(
    subject_type: &str,
    subject_id: Option<&str>,
    actor_type: &str,
    actor_id: Option<&str>,
    details: &serde_json::Value,
) -> Option<String> {
    if subject_type == "organisation" {
        return subject_id.map(str::to_owned);
    }
    if actor_type == "organisation" {
        return actor_id.map(str::to_owned);
    }
    details
        .get("organisation_id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// The record's canonical encoding: what its hashes cover. JSON with keys in a fixed (sorted)
/// order at every depth, no insignificant whitespace, and the time in UTC to the microsecond
/// (`2026-11-29T10:00:00.000000Z`), independent of how any database renders a row.
pub fn canonical(position: i64, event: &AuditEvent) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    out.push('{');
    let fields: [(&str, Option<serde_json::Value>); 10] = [
        ("action", Some(event.action.clone().into())),
        ("actor_id", event.actor_id.clone().map(Into::into)),
        ("actor_type", Some(event.actor_type.clone().into())),
        ("details", Some(event.details.clone())),
        ("id", Some(event.id.to_string().into())),
        (
            "occurred_at",
            Some(
                event
                    .occurred_at
                    .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                    .to_string()
                    .into(),
            ),
        ),
        ("position", Some(position.into())),
        ("request_id", event.request_id.clone().map(Into::into)),
        ("subject_id", event.subject_id.clone().map(Into::into)),
        ("subject_type", Some(event.subject_type.clone().into())),
    ];
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, key);
        out.push(':');
        write_canonical(&mut out, value.as_ref().unwrap_or(&serde_json::Value::Null));
    }
    out.push('}');
    out.into_bytes()
}

fn write_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

fn write_canonical(out: &mut String, value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_canonical(out, &map[key]);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The sealed head of the trail: how many records, the last chain hash, the Merkle root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    pub size: i64,
    pub chain_hash: crate::merkle::Hash,
    pub root: crate::merkle::Hash,
}

/// The chain hash of the record at `position`: SHA-256(prev || canonical(record)), where
/// prev is the previous record's chain hash (32 zero bytes before the first).
pub fn chain_hash(
    h: &dyn crate::merkle::Sha256,
    prev: &crate::merkle::Hash,
    canonical: &[u8],
) -> crate::merkle::Hash {
    h.sha256(&[prev, canonical])
}

/// Why a record fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub position: i64,
    pub reason: String,
}

/// Verifies records in position order, from a known head (size 0 and zero hash at the
/// start): contiguous positions, the chain hash each stored, and the Merkle root at every
/// checkpoint size given. Stops at the first bad record.
#[derive(Debug)]
pub struct ChainVerifier<'a> {
    h: &'a dyn crate::merkle::Sha256,
    next: i64,
    prev: crate::merkle::Hash,
    tree: crate::merkle::Appender,
}

impl<'a> ChainVerifier<'a> {
    pub fn new(h: &'a dyn crate::merkle::Sha256) -> Self {
        Self {
            h,
            next: 0,
            prev: [0; 32],
            tree: crate::merkle::Appender::new(0, &std::collections::HashMap::new()),
        }
    }

    /// Checks the next record and the chain hash stored with it.
    pub fn check(&mut self, event: &AuditEvent, stored_hash: &str) -> Result<(), BadRecord> {
        let bad = |position: i64, reason: String| BadRecord { position, reason };
        let position = event.position.ok_or_else(|| {
            bad(
                self.next,
                "an unsealed record in the sealed trail".to_owned(),
            )
        })?;
        if position != self.next {
            return Err(bad(
                self.next,
                format!(
                    "record {} is missing (found {position} in its place)",
                    self.next
                ),
            ));
        }
        let canonical = canonical(position, event);
        let hash = chain_hash(self.h, &self.prev, &canonical);
        if hex(&hash) != stored_hash {
            return Err(bad(
                position,
                "the record or its chain hash was altered (its hash does not follow from the previous record)".to_owned(),
            ));
        }
        self.tree
            .push(self.h, crate::merkle::leaf_hash(self.h, &canonical));
        self.prev = hash;
        self.next += 1;
        Ok(())
    }

    pub fn head(&self) -> TreeHead {
        TreeHead {
            size: self.next,
            chain_hash: self.prev,
            root: self.tree.root(self.h),
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits into a hash.
pub fn unhex(text: &str) -> Option<crate::merkle::Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A disclosure of data to a partner, recorded for every answer a data endpoint gives:
/// which organisation, under which agreement, with which key, for which request, what and
/// how much.
#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    pub organisation: OrganisationId,
    pub agreement: crate::agreement::AgreementId,
    /// The `kid` of the key whose token the request carried, when known.
    pub key_id: Option<String>,
    pub request_id: Option<String>,
    /// What was disclosed, e.g. `address_book.page`, `free_busy.answer`.
    pub what: &'static str,
    /// How many items (entries, mailboxes).
    pub count: u64,
    /// Anything else worth keeping (the cursor position, the time window), never secrets.
    pub details: serde_json::Value,
}

impl Disclosure {
    pub fn event(&self, at: DateTime<Utc>) -> NewAuditEvent {
        let mut details = serde_json::json!({
            "organisation_id": self.organisation.to_string(),
            "agreement_id": self.agreement.to_string(),
            "key_id": self.key_id,
            "what": self.what,
            "count": self.count,
        });
        if let (Some(out), serde_json::Value::Object(extra)) =
            (details.as_object_mut(), &self.details)
        {
            for (key, value) in extra {
                out.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        NewAuditEvent {
            occurred_at: at,
            actor: Actor::Organisation(self.organisation),
            action: AuditAction::DataDisclosed,
            subject_type: "agreement",
            subject_id: Some(self.agreement.to_string()),
            request_id: self.request_id.clone(),
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn excerpts_and_details_are_bounded() {
        use super::*;
        assert_eq!(excerpt("short", 64), "short");
        let long = "é".repeat(70_000);
        let cut = excerpt(&long, 64);
        assert_eq!(cut.chars().count(), 64);
        assert!(cut.ends_with('…'));
        let details = serde_json::json!({ "a": [long.clone(), {"b": long.clone()}], long.clone(): 1, "n": 5 });
        let bounded = bound_details(&details);
        assert!(bounded.to_string().chars().count() < 4 * MAX_DETAIL_CHARS + 100);
        assert_eq!(bounded["n"], 5);
        let event = NewAuditEvent {
            occurred_at: chrono::Utc::now(),
            actor: Actor::Reviewer(long.clone()),
            action: AuditAction::ReviewerLogin,
            subject_type: "reviewer",
            subject_id: Some(long.clone()),
            request_id: Some(long),
            details,
        }
        .bounded();
        assert!(event
            .actor
            .id()
            .is_some_and(|a| a.chars().count() == MAX_ID_CHARS));
        assert!(event
            .subject_id
            .is_some_and(|a| a.chars().count() == MAX_ID_CHARS));
        assert!(event
            .request_id
            .is_some_and(|a| a.chars().count() == MAX_ID_CHARS));
    }

    use super::*;
    use crate::merkle::tests::TestHash;

    fn event(details: serde_json::Value) -> AuditEvent {
        AuditEvent {
            seq: 9,
            position: Some(0),
            id: Uuid::nil(),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-29T10:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
            actor_type: "reviewer".into(),
            actor_id: Some("r1".into()),
            action: "agreement.approved".into(),
            subject_type: "agreement".into(),
            subject_id: None,
            request_id: None,
            details,
        }
    }

    #[test]
    fn the_canonical_form_is_fixed_whatever_the_key_order() {
        let a = canonical(
            0,
            &event(serde_json::json!({"b": 1, "a": {"y": [2, "x"], "x": null}})),
        );
        let b = canonical(
            0,
            &event(serde_json::from_str(r#"{"a":{"x":null,"y":[2,"x"]},"b":1}"#).unwrap()),
        );
        assert_eq!(a, b);
        assert_eq!(
            String::from_utf8(a).unwrap(),
            r#"{"action":"agreement.approved","actor_id":"r1","actor_type":"reviewer","details":{"a":{"x":null,"y":[2,"x"]},"b":1},"id":"00000000-0000-0000-0000-000000000000","occurred_at":"2026-11-29T10:00:00.500000Z","position":0,"request_id":null,"subject_id":null,"subject_type":"agreement"}"#
        );
    }

    #[test]
    fn the_verifier_names_the_first_bad_record() {
        let h = TestHash;
        let mut records = Vec::new();
        let mut prev = [0u8; 32];
        for i in 0..5 {
            let mut e = event(serde_json::json!({ "n": i }));
            e.position = Some(i);
            let hash = chain_hash(&h, &prev, &canonical(i, &e));
            records.push((e, hex(&hash)));
            prev = hash;
        }
        let run = |records: &[(AuditEvent, String)]| {
            let mut v = ChainVerifier::new(&h);
            for (e, hash) in records {
                v.check(e, hash)?;
            }
            Ok::<_, BadRecord>(v.head())
        };
        assert_eq!(run(&records).unwrap().size, 5);
        let mut altered = records.clone();
        altered[2].0.details = serde_json::json!({ "n": 99 });
        assert_eq!(run(&altered).unwrap_err().position, 2);
        let mut deleted = records.clone();
        deleted.remove(3);
        assert_eq!(run(&deleted).unwrap_err().position, 3);
        let mut swapped = records.clone();
        swapped.swap(1, 2);
        assert_eq!(run(&swapped).unwrap_err().position, 1);
        assert_eq!(
            unhex(&records[0].1).map(|h| hex(&h)),
            Some(records[0].1.clone())
        );
    }
}
