//! Email domains: DNS names an organisation sends mail from, and the rules on claiming them.

use std::fmt;

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
    fn parents_are_listed_nearest_first() {
        let domain = EmailDomain::parse("a.b.nhs.uk").unwrap();
        assert_eq!(
            domain.parents().collect::<Vec<_>>(),
            ["b.nhs.uk", "nhs.uk", "uk"]
        );
    }
}
