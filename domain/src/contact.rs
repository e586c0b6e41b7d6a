//! Named contacts an organisation gives us: its information-governance lead and its
//! technical contact.

use std::fmt;

use crate::dns::EmailDomain;
use crate::text::PersonName;
use crate::validation::{RuleViolation, ValidationErrors};

/// An email address: a dot-atom local part and a DNS domain (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

const LOCAL_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";

impl EmailAddress {
    pub const MAX_LEN: usize = 254;
    pub const MAX_LOCAL_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, RuleViolation> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(RuleViolation::new("required", "must not be empty"));
        }
        let invalid = |why: &str| {
            RuleViolation::new(
                "email",
                format!("must be an email address such as jane.doe@example.org: {why}"),
            )
        };
        let Some((local, domain)) = value.rsplit_once('@') else {
            return Err(invalid("has no @"));
        };
        if local.is_empty() || local.len() > Self::MAX_LOCAL_LEN {
            return Err(invalid("the part before @ must be 1 to 64 characters"));
        }
        if !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(invalid(
                "the part before @ has characters that are not allowed",
            ));
        }
        let domain = EmailDomain::parse(domain).map_err(|e| invalid(&e.message))?;
        let address = format!("{local}@{domain}");
        if address.len() > Self::MAX_LEN {
            return Err(invalid("longer than 254 characters"));
        }
        Ok(Self(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = RuleViolation;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<EmailAddress> for String {
    fn from(address: EmailAddress) -> String {
        address.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which contact of an organisation this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactRole {
    IgLead,
    Technical,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    pub name: PersonName,
    pub email: EmailAddress,
}

impl Contact {
    pub fn parse(name: &str, email: &str) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = errors.check("name", PersonName::parse(name));
        let email = errors.check("email", EmailAddress::parse(email));
        errors.finish(|| {
            Some(Self {
                name: name?,
                email: email?,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contacts {
    pub ig_lead: Contact,
    pub technical: Contact,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(raw: &str) -> Result<String, &'static str> {
        EmailAddress::parse(raw)
            .map(String::from)
            .map_err(|e| e.rule)
    }

    #[test]
    fn accepts_ordinary_addresses_and_lowercases_the_domain() {
        assert_eq!(
            rule("Jane.Doe@Example.ORG").as_deref(),
            Ok("Jane.Doe@example.org")
        );
        assert_eq!(
            rule(" ig+lead@care.org.uk ").as_deref(),
            Ok("ig+lead@care.org.uk")
        );
    }

    #[test]
    fn refuses_malformed_addresses() {
        assert_eq!(rule(""), Err("required"));
        for bad in [
            "no-at-sign",
            "@example.org",
            "jane@",
            "jane@localhost",
            "jane doe@example.org",
            ".jane@example.org",
            "jane.@example.org",
            "ja..ne@example.org",
            "jane@exa mple.org",
        ] {
            assert_eq!(rule(bad), Err("email"), "{bad}");
        }
        assert_eq!(
            rule(&format!("{}@example.org", "a".repeat(65))),
            Err("email")
        );
    }

    #[test]
    fn contact_reports_both_fields() {
        let errors = Contact::parse("", "nope").unwrap_err();
        let fields: Vec<_> = errors
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.rule))
            .collect();
        assert_eq!(fields, [("name", "required"), ("email", "email")]);
    }
}
