//! ODS codes: the identifiers the Organisation Data Service gives every care organisation.

use std::fmt;

use crate::validation::RuleViolation;

/// An ODS code, normalised to upper case (`rr8`, ` RR8 ` and `RR8` are the same code).
///
/// Real codes are 3 (trusts, e.g. `RR8`) to 9 characters (some sites and branches); we accept
/// 3 to 10 ASCII letters and digits.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct OdsCode(String);

impl OdsCode {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 10;

    pub fn parse(raw: &str) -> Result<Self, RuleViolation> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(RuleViolation::new("required", "must not be empty"));
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(RuleViolation::new(
                "alphanumeric",
                "must contain only the letters A-Z and digits 0-9",
            ));
        }
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&value.len()) {
            return Err(RuleViolation::new(
                "length",
                format!(
                    "must be {} to {} characters long (got {})",
                    Self::MIN_LEN,
                    Self::MAX_LEN,
                    value.len()
                ),
            ));
        }
        Ok(Self(value.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OdsCode {
    type Error = RuleViolation;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<OdsCode> for String {
    fn from(code: OdsCode) -> String {
        code.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises_real_shapes() {
        for (raw, expected) in [
            ("RR8", "RR8"),
            ("rr8", "RR8"),
            (" A81001 ", "A81001"),
            ("8JL89", "8JL89"),
            ("RX1AB0001", "RX1AB0001"),
        ] {
            assert_eq!(
                OdsCode::parse(raw).map(String::from).as_deref(),
                Ok(expected)
            );
        }
    }

    #[test]
    fn refuses_each_broken_rule() {
        let rule = |raw: &str| OdsCode::parse(raw).map_err(|e| e.rule);
        assert_eq!(rule(""), Err("required"));
        assert_eq!(rule("   "), Err("required"));
        assert_eq!(rule("RR-8"), Err("alphanumeric"));
        assert_eq!(rule("RR 8"), Err("alphanumeric"));
        assert_eq!(rule("ÄB1"), Err("alphanumeric"));
        assert_eq!(rule("R8"), Err("length"));
        assert_eq!(rule("ABCDEFGHIJK"), Err("length"));
    }

    #[test]
    fn deserialises_through_the_same_rules() {
        let code: OdsCode = serde_json::from_str("\"y02345\"").unwrap();
        assert_eq!(code.as_str(), "Y02345");
        assert!(serde_json::from_str::<OdsCode>("\"y0-2\"").is_err());
    }
}
