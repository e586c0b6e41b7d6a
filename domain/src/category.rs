//! The kinds of care environment an organisation can register as.

use std::fmt;

use crate::validation::RuleViolation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CareCategory {
    NhsTrust,
    GpPractice,
    SocialCareProvider,
    LocalAuthority,
    Hospice,
    IndependentHealthcareProvider,
    Pharmacy,
    OtherCareProvider,
}

impl CareCategory {
    pub const ALL: [CareCategory; 8] = [
        Self::NhsTrust,
        Self::GpPractice,
        Self::SocialCareProvider,
        Self::LocalAuthority,
        Self::Hospice,
        Self::IndependentHealthcareProvider,
        Self::Pharmacy,
        Self::OtherCareProvider,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NhsTrust => "nhs_trust",
            Self::GpPractice => "gp_practice",
            Self::SocialCareProvider => "social_care_provider",
            Self::LocalAuthority => "local_authority",
            Self::Hospice => "hospice",
            Self::IndependentHealthcareProvider => "independent_healthcare_provider",
            Self::Pharmacy => "pharmacy",
            Self::OtherCareProvider => "other_care_provider",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, RuleViolation> {
        let value = raw.trim();
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == value)
            .ok_or_else(|| {
                RuleViolation::new(
                    "one_of",
                    format!("must be one of {}", Self::ALL.map(Self::as_str).join(", ")),
                )
            })
    }
}

impl fmt::Display for CareCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_round_trips() {
        for category in CareCategory::ALL {
            assert_eq!(CareCategory::parse(category.as_str()), Ok(category));
            assert_eq!(
                serde_json::to_string(&category).unwrap(),
                format!("\"{category}\"")
            );
        }
    }

    #[test]
    fn unknown_category_is_refused() {
        assert_eq!(
            CareCategory::parse("NHS Trust").map_err(|e| e.rule),
            Err("one_of")
        );
        assert_eq!(CareCategory::parse("").map_err(|e| e.rule), Err("one_of"));
    }
}
