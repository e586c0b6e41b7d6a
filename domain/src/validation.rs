//! Field-level validation failures, collected so a caller sees every broken rule at once.

use std::fmt;

/// One broken rule on one field of an input document.
///
/// `field` is a JSON-path-like location (`domains[2]`, `contacts.ig_lead.email`), `rule` a
/// stable machine-readable name of the rule, `message` a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub rule: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule,
            message: message.into(),
        }
    }

    /// The same failure, located under `prefix` (`name` under `contacts.ig_lead`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.message, self.rule)
    }
}

/// A rule broken by a single value, before it is placed at a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleViolation {
    pub rule: &'static str,
    pub message: String,
}

impl RuleViolation {
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }

    pub fn at(self, field: impl Into<String>) -> FieldError {
        FieldError::new(field, self.rule, self.message)
    }
}

/// Every rule an input broke; never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), summary(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationErrors {
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records the error of `result` at `field` and yields its value, if any.
    pub fn check<T>(&mut self, field: &str, result: Result<T, RuleViolation>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violation) => {
                self.push(violation.at(field));
                None
            }
        }
    }

    /// Records every nested error under `prefix` and yields the value, if any.
    pub fn nested<T>(&mut self, prefix: &str, result: Result<T, ValidationErrors>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(errors) => {
                self.0.extend(errors.0.into_iter().map(|e| e.under(prefix)));
                None
            }
        }
    }

    /// `Ok(value)` when nothing was recorded; the collected errors otherwise.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, ValidationErrors> {
        if self.is_empty() {
            // A `None` with no recorded error would be a bug in the caller's bookkeeping.
            value().ok_or_else(|| {
                ValidationErrors(vec![FieldError::new(
                    "",
                    "internal",
                    "input could not be validated",
                )])
            })
        } else {
            Err(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_errors_get_their_prefix() {
        let mut errors = ValidationErrors::default();
        let inner = ValidationErrors(vec![
            FieldError::new("email", "email", "bad"),
            FieldError::new("[1]", "dns_name", "bad"),
        ]);
        errors.nested::<()>("contacts.ig_lead", Err(inner));
        assert_eq!(errors.0[0].field, "contacts.ig_lead.email");
        assert_eq!(errors.0[1].field, "contacts.ig_lead[1]");
    }

    #[test]
    fn finish_reports_collected_errors() {
        let mut errors = ValidationErrors::default();
        let value = errors.check("name", Err::<u8, _>(RuleViolation::new("required", "x")));
        assert!(value.is_none());
        assert!(errors.finish(|| value).is_err());
        assert_eq!(ValidationErrors::default().finish(|| Some(3)), Ok(3));
    }
}
