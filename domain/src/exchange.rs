//! Exchange versions a partner platform may run; federation needs Exchange 2010 or later.

use std::fmt;

use crate::validation::RuleViolation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ExchangeVersion {
    #[serde(rename = "exchange_2010")]
    Exchange2010,
    #[serde(rename = "exchange_2013")]
    Exchange2013,
    #[serde(rename = "exchange_2016")]
    Exchange2016,
    #[serde(rename = "exchange_2019")]
    Exchange2019,
    #[serde(rename = "exchange_online")]
    ExchangeOnline,
}

/// Versions that exist but cannot federate: named so the refusal can say why.
const TOO_OLD: &[&str] = &[
    "exchange_4_0",
    "exchange_5_0",
    "exchange_5_5",
    "exchange_2000",
    "exchange_2003",
    "exchange_2007",
];

impl ExchangeVersion {
    pub const ALL: [ExchangeVersion; 5] = [
        Self::Exchange2010,
        Self::Exchange2013,
        Self::Exchange2016,
        Self::Exchange2019,
        Self::ExchangeOnline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exchange2010 => "exchange_2010",
            Self::Exchange2013 => "exchange_2013",
            Self::Exchange2016 => "exchange_2016",
            Self::Exchange2019 => "exchange_2019",
            Self::ExchangeOnline => "exchange_online",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, RuleViolation> {
        let value = raw.trim();
        if let Some(version) = Self::ALL.into_iter().find(|v| v.as_str() == value) {
            return Ok(version);
        }
        if TOO_OLD.contains(&value) {
            return Err(RuleViolation::new(
                "minimum_version",
                format!(
                    "{value} cannot federate: address-book and free/busy federation needs Exchange 2010 or later"
                ),
            ));
        }
        Err(RuleViolation::new(
            "one_of",
            format!("must be one of {}", Self::ALL.map(Self::as_str).join(", ")),
        ))
    }
}

impl fmt::Display for ExchangeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_round_trips() {
        for version in ExchangeVersion::ALL {
            assert_eq!(ExchangeVersion::parse(version.as_str()), Ok(version));
            let json = serde_json::to_string(&version).unwrap();
            assert_eq!(json, format!("\"{}\"", version.as_str()));
        }
    }

    #[test]
    fn pre_2010_versions_are_refused_with_the_reason() {
        let error = ExchangeVersion::parse("exchange_2007").unwrap_err();
        assert_eq!(error.rule, "minimum_version");
        assert!(error.message.contains("Exchange 2010 or later"));
        assert_eq!(
            ExchangeVersion::parse("exchange_2003").map_err(|e| e.rule),
            Err("minimum_version")
        );
    }

    #[test]
    fn unknown_values_list_the_choices() {
        let error = ExchangeVersion::parse("lotus_notes").unwrap_err();
        assert_eq!(error.rule, "one_of");
        assert!(error.message.contains("exchange_online"));
    }
}
