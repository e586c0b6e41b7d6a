//! Bounded free-text newtypes: organisation names, contact names, business-need statements.

use crate::validation::RuleViolation;

/// Trims `raw` and checks it is between `min` and `max` characters with no control characters
/// (line breaks are allowed only when `multiline`).
pub(crate) fn bounded_text(
    raw: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, RuleViolation> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(RuleViolation::new("required", "must not be empty"));
    }
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(RuleViolation::new(
            "length",
            format!("must be between {min} and {max} characters (got {chars})"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(RuleViolation::new(
            "no_control_characters",
            "must not contain control characters",
        ));
    }
    if value.chars().any(is_invisible) {
        return Err(RuleViolation::new(
            "no_invisible_characters",
            "must not contain invisible formatting characters (bidirectional overrides, zero-width spaces, line or paragraph separators)",
        ));
    }
    Ok(value.to_owned())
}

/// Characters that change how text around them shows without showing themselves: a name
/// holding them can pass for another (the joiners U+200C and U+200D stay allowed: some
/// scripts need them).
fn is_invisible(c: char) -> bool {
    matches!(c,
        // Format characters (Unicode category Cf) but the joiners, and blank-looking fillers.
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{180E}'
        | '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}')
}

macro_rules! bounded_text_type {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $multiline:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MIN_CHARS: usize = $min;
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, RuleViolation> {
                bounded_text(raw, $min, $max, $multiline).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = RuleViolation;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

bounded_text_type!(
    /// An organisation's legal name.
    OrganisationName, 2, 200, false
);
bounded_text_type!(
    /// A person's name as given for a contact.
    PersonName, 1, 200, false
);
bounded_text_type!(
    /// Why a reviewer took an action, or a short description: read by people, bounded.
    Reason, 1, 2000, true
);
bounded_text_type!(
    /// A short title or job role.
    ShortText, 1, 200, false
);
bounded_text_type!(
    /// Why the organisation needs federation: read by reviewers, so free text, bounded.
    BusinessNeed, 20, 4000, true
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_formatting_characters_are_refused() {
        for sneaky in [
            "Ada\u{202E}ecalevol",
            "Ada\u{200B}Lovelace",
            "Ada\u{2028}Lovelace",
            "\u{FEFF}Ada",
        ] {
            let error = bounded_text(sneaky, 1, 50, false).unwrap_err();
            assert_eq!(error.rule, "no_invisible_characters", "{sneaky:?}");
        }
        assert!(bounded_text("Mohammad\u{200C}Reza", 1, 50, false).is_ok());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            OrganisationName::parse("  Leeds Care Ltd ")
                .map(String::from)
                .as_deref(),
            Ok("Leeds Care Ltd")
        );
        assert_eq!(
            OrganisationName::parse("   ").map_err(|e| e.rule),
            Err("required")
        );
        assert_eq!(
            OrganisationName::parse("A").map_err(|e| e.rule),
            Err("length")
        );
        assert_eq!(
            OrganisationName::parse(&"x".repeat(201)).map_err(|e| e.rule),
            Err("length")
        );
        assert_eq!(
            OrganisationName::parse("Bad\u{0}Name").map_err(|e| e.rule),
            Err("no_control_characters")
        );
        assert!(OrganisationName::parse(&"é".repeat(200)).is_ok());
    }

    #[test]
    fn business_need_allows_paragraphs_but_not_other_controls() {
        assert!(BusinessNeed::parse("We run district nursing.\nWe need the GAL.").is_ok());
        assert_eq!(
            BusinessNeed::parse("too short").map_err(|e| e.rule),
            Err("length")
        );
        assert_eq!(
            BusinessNeed::parse("We need the address book \u{7} for care").map_err(|e| e.rule),
            Err("no_control_characters")
        );
        assert_eq!(
            BusinessNeed::parse(&"x".repeat(4001)).map_err(|e| e.rule),
            Err("length")
        );
    }
}
