//! Email domains: DNS names an organisation sends mail from, the rules on claiming them, and
//! how an organisation proves it owns one (a DNS TXT record), with the ports that proof needs.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::validation::RuleViolation;

/// A syntactically valid, lower-cased, fully qualified DNS name (no trailing dot).
///
/// Parsing checks only the shape of the name; whether an organisation may *claim* it is
/// [`EmailDomain::check_claimable`].
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct EmailDomain(String);

/// Domains that belong to the national platform itself: never claimable by a partner, so a
/// partner can never pose as the platform.
const RESERVED: &[&str] = &["nhs.net"];

/// Government Secure Intranet domains, switched off on 31 March 2019. Mail from them can no
/// longer be genuine.
const RETIRED: &[&str] = &["gcsx.gov.uk", "gsi.gov.uk", "gsx.gov.uk", "gse.gov.uk"];

impl EmailDomain {
    pub const MAX_LEN: usize = 253;
    pub const MAX_LABEL_LEN: usize = 63;

    pub fn parse(raw: &str) -> Result<Self, RuleViolation> {
        let trimmed = raw.trim();
        let value = trimmed
            .strip_suffix('.')
            .unwrap_or(trimmed)
            .to_ascii_lowercase();
        if value.is_empty() {
            return Err(RuleViolation::new("required", "must not be empty"));
        }
        let invalid = |why: &str| {
            RuleViolation::new(
                "dns_name",
                format!("must be a fully qualified DNS name such as example.org.uk: {why}"),
            )
        };
        if value.len() > Self::MAX_LEN {
            return Err(invalid("longer than 253 characters"));
        }
        let labels: Vec<&str> = value.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid("needs at least two labels"));
        }
        for label in &labels {
            if label.is_empty() {
                return Err(invalid("has an empty label"));
            }
            if label.len() > Self::MAX_LABEL_LEN {
                return Err(invalid("has a label longer than 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(invalid(
                    "labels may hold only letters, digits and hyphens (use punycode for others)",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("a label may not start or end with a hyphen"));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("the top-level label may not be numeric"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this name is `parent` or one of its subdomains.
    pub fn is_within(&self, parent: &str) -> bool {
        self.0 == parent
            || (self.0.len() > parent.len()
                && self.0.ends_with(parent)
                && self.0.as_bytes()[self.0.len() - parent.len() - 1] == b'.')
    }

    /// The proper parent names of this one, nearest first: `a.b.nhs.uk` gives `b.nhs.uk`,
    /// `nhs.uk`, `uk`. A wildcard pattern `*.P` covers this name exactly when P is one of these.
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.0
            .char_indices()
            .filter(|(_, c)| *c == '.')
            .map(move |(i, _)| &self.0[i + 1..])
    }

    /// Whether a partner organisation may claim this domain.
    pub fn check_claimable(&self) -> Result<(), RuleViolation> {
        if let Some(reserved) = RESERVED.iter().find(|r| self.is_within(r)) {
            return Err(RuleViolation::new(
                "reserved_domain",
                format!(
                    "{reserved} and its subdomains belong to the national platform and can never be claimed"
                ),
            ));
        }
        if let Some(retired) = RETIRED.iter().find(|r| self.is_within(r)) {
            return Err(RuleViolation::new(
                "retired_domain",
                format!(
                    "{retired} is a retired Government Secure Intranet domain (switched off in March 2019)"
                ),
            ));
        }
        Ok(())
    }
}

impl EmailDomain {
    /// Where the organisation publishes its proof: `_federation-gateway.<domain>`.
    pub fn txt_record_name(&self) -> String {
        format!("{TXT_LABEL}.{}", self.0)
    }
}

/// The label under the claimed domain that holds the proof.
pub const TXT_LABEL: &str = "_federation-gateway";
/// What the TXT record's value starts with; the verification token follows.
pub const TXT_PREFIX: &str = "federation-gateway-verification=";

/// The per-domain secret an organisation publishes to prove that it controls the domain. It
/// is random (122 bits), shown only to the organisation, and kept while the claim stands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerificationToken(String);

impl VerificationToken {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// A stored token: 16 to 64 lower-case hex digits.
    pub fn parse(raw: &str) -> Result<Self, RuleViolation> {
        if (16..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(RuleViolation::new(
                "verification_token",
                "must be 16 to 64 lower-case hex digits",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The exact TXT value to publish.
    pub fn txt_value(&self) -> String {
        format!("{TXT_PREFIX}{}", self.0)
    }
}

/// How a domain was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerificationMethod {
    /// The organisation published the TXT record and the gateway resolved it.
    Dns,
    /// A reviewer verified it by hand, with a reason.
    Manual,
}

impl VerificationMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Manual => "manual",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "dns" => Some(Self::Dns),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }
}

/// A successful verification: when, how and (by hand) by whom and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub at: DateTime<Utc>,
    pub method: VerificationMethod,
    /// The reviewer's subject, for a manual verification.
    pub by: Option<String>,
    pub reason: Option<String>,
}

/// A claimed domain's standing, as the organisation and reviewers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainStatus {
    /// Claimed but not proven; blocks nobody.
    Unverified,
    /// Proven: it belongs to this organisation, and blocks the name and its subdomains for
    /// every other organisation.
    Verified,
    /// Another organisation holds a verified claim on this name or a parent of it: this
    /// claim can never be verified while that stands.
    Conflict,
}

impl DomainStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::Verified => "verified",
            Self::Conflict => "conflict",
        }
    }
}

/// What a DNS server said about the TXT records at a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtAnswer {
    /// The TXT records, each one's character-strings joined.
    Records(Vec<String>),
    /// The name exists but has no TXT records (NOERROR, no data).
    NoRecords,
    /// The name does not exist (NXDOMAIN).
    NxDomain,
}

/// No nameserver gave an answer (timeout, refused, SERVFAIL): nothing can be concluded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DNS unavailable: {0}")]
pub struct DnsUnavailable(pub String);

/// Port: resolves TXT records through a real resolver. Implementations MUST NOT cache
/// answers across calls (a proof is checked as it stands now), and MUST report a server that
/// did not answer as `DnsUnavailable`, never as `NoRecords` or `NxDomain`.
pub trait TxtResolver: Send + Sync {
    fn txt(&self, name: &str) -> Result<TxtAnswer, DnsUnavailable>;
}

/// Port: the Public Suffix List (names under which anyone can register, such as `org.uk`
/// or `github.io`), kept outside the domain layer.
pub trait PublicSuffixes: Send + Sync {
    /// Whether `name` is itself a public suffix (ICANN or private section).
    fn is_public_suffix(&self, name: &str) -> bool;
}

/// Whether `answer` proves `token` for `domain`: one TXT record exactly
/// `federation-gateway-verification=<token>` (surrounding blanks ignored).
pub fn check_txt_proof(
    domain: &EmailDomain,
    token: &VerificationToken,
    answer: &TxtAnswer,
) -> Result<(), RuleViolation> {
    let name = domain.txt_record_name();
    let expected = token.txt_value();
    let records = match answer {
        TxtAnswer::NxDomain => {
            return Err(RuleViolation::new(
                "txt_record_missing",
                format!("{name} does not exist (NXDOMAIN): publish TXT \"{expected}\" there"),
            ))
        }
        TxtAnswer::NoRecords => &[][..],
        TxtAnswer::Records(records) => records.as_slice(),
    };
    if records.iter().any(|r| r.trim() == expected) {
        return Ok(());
    }
    if records.iter().any(|r| r.trim().starts_with(TXT_PREFIX)) {
        return Err(RuleViolation::new(
            "txt_record_mismatch",
            format!(
                "the TXT record at {name} holds another verification token: publish \"{expected}\""
            ),
        ));
    }
    Err(RuleViolation::new(
        "txt_record_missing",
        format!("no TXT record at {name} starts with {TXT_PREFIX}: publish \"{expected}\""),
    ))
}

impl TryFrom<String> for EmailDomain {
    type Error = RuleViolation;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<EmailDomain> for String {
    fn from(domain: EmailDomain) -> String {
        domain.0
    }
}

impl fmt::Display for EmailDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(raw: &str) -> Result<String, &'static str> {
        EmailDomain::parse(raw)
            .map(String::from)
            .map_err(|e| e.rule)
    }

    #[test]
    fn accepts_and_normalises_valid_names() {
        assert_eq!(
            rule("Leeds-Care.org.UK").as_deref(),
            Ok("leeds-care.org.uk")
        );
        assert_eq!(rule(" example.com. ").as_deref(), Ok("example.com"));
        assert_eq!(
            rule("xn--bcher-kva.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(rule("a1.b2.c3.nhs.uk").as_deref(), Ok("a1.b2.c3.nhs.uk"));
    }

    #[test]
    fn refuses_malformed_names() {
        assert_eq!(rule(""), Err("required"));
        assert_eq!(rule("localhost"), Err("dns_name"));
        assert_eq!(rule("a..example.org"), Err("dns_name"));
        assert_eq!(rule(".example.org"), Err("dns_name"));
        assert_eq!(rule("-bad.example.org"), Err("dns_name"));
        assert_eq!(rule("bad-.example.org"), Err("dns_name"));
        assert_eq!(rule("under_score.example.org"), Err("dns_name"));
        assert_eq!(rule("bücher.example"), Err("dns_name"));
        assert_eq!(rule("user@example.org"), Err("dns_name"));
        assert_eq!(rule("10.0.0.1"), Err("dns_name"));
        assert_eq!(rule(&format!("{}.org", "a".repeat(64))), Err("dns_name"));
        let long = format!("{}.org", ["abcdefghi"; 26].join("."));
        assert!(long.len() > 253);
        assert_eq!(rule(&long), Err("dns_name"));
    }

    #[test]
    fn nhs_net_and_subdomains_can_never_be_claimed() {
        for name in ["nhs.net", "NHS.NET", "leeds.nhs.net", "a.b.nhs.net"] {
            let domain = EmailDomain::parse(name).unwrap();
            assert_eq!(
                domain.check_claimable().map_err(|e| e.rule),
                Err("reserved_domain"),
                "{name}"
            );
        }
        // Look-alikes that are not under nhs.net are ordinary domains.
        for name in ["notnhs.net", "nhs.net.example.org", "nhs.uk"] {
            assert!(
                EmailDomain::parse(name).unwrap().check_claimable().is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn retired_gsi_domains_are_refused() {
        for name in [
            "leeds.gcsx.gov.uk",
            "gcsx.gov.uk",
            "x.gsi.gov.uk",
            "x.gse.gov.uk",
            "x.gsx.gov.uk",
        ] {
            let domain = EmailDomain::parse(name).unwrap();
            assert_eq!(
                domain.check_claimable().map_err(|e| e.rule),
                Err("retired_domain"),
                "{name}"
            );
        }
        assert!(EmailDomain::parse("leeds.gov.uk")
            .unwrap()
            .check_claimable()
            .is_ok());
    }

    #[test]
    fn a_txt_proof_needs_the_exact_token() {
        let domain = EmailDomain::parse("leedscare.org.uk").unwrap();
        let token = VerificationToken::generate();
        assert_eq!(
            domain.txt_record_name(),
            "_federation-gateway.leedscare.org.uk"
        );
        let check =
            |answer: TxtAnswer| check_txt_proof(&domain, &token, &answer).map_err(|e| e.rule);
        assert_eq!(check(TxtAnswer::NxDomain), Err("txt_record_missing"));
        assert_eq!(check(TxtAnswer::NoRecords), Err("txt_record_missing"));
        assert_eq!(
            check(TxtAnswer::Records(vec!["v=spf1 -all".into()])),
            Err("txt_record_missing")
        );
        assert_eq!(
            check(TxtAnswer::Records(vec![format!(
                "{TXT_PREFIX}0123456789abcdef"
            )])),
            Err("txt_record_mismatch")
        );
        assert_eq!(
            check(TxtAnswer::Records(vec![
                "v=spf1 -all".into(),
                format!(" {} ", token.txt_value())
            ])),
            Ok(())
        );
    }

    #[test]
    fn tokens_are_random_and_parse_back() {
        let a = VerificationToken::generate();
        assert_ne!(a, VerificationToken::generate());
        assert_eq!(VerificationToken::parse(a.as_str()), Ok(a));
        assert!(VerificationToken::parse("not-hex").is_err());
    }

    #[test]
    fn parents_are_listed_nearest_first() {
        let domain = EmailDomain::parse("a.b.nhs.uk").unwrap();
        assert_eq!(
            domain.parents().collect::<Vec<_>>(),
            ["b.nhs.uk", "nhs.uk", "uk"]
        );
    }
}
