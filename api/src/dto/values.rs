//! Documentation-only schemas of the values requests carry (ODS codes, DNS names, email
//! addresses, bounded texts): what JSON Schema can say of the domain's parsing rules, so a
//! generated client checks a value before sending it. Never constructed; fields keep their
//! `String` and name one of these as `value_type`.
//!
//! Each schema describes the canonical form the gateway stores. The gateway is lenient beyond
//! it in two documented ways a schema cannot say without lookaheads (which generators turn
//! into rejection sampling): it trims surrounding whitespace, and it accepts a DNS name with a
//! final dot. What no schema can say (reserved and retired domains, case-insensitive
//! uniqueness, the 64-character local part of an email address, a DNS name's top-level label
//! starting with a digit) the gateway refuses with 422 naming the field and rule.
//!
//! `tests/tests/e2e/schema.rs` checks that these schemas and the live server give the same
//! answer at every bound, and that the bounds are the domain's own constants.

#![allow(dead_code)]

use utoipa::ToSchema;

/// An ODS code: 3 to 10 ASCII letters and digits (case is normalised to upper).
#[derive(Debug, ToSchema)]
#[schema(
    as = OdsCode,
    pattern = r"^[A-Za-z0-9]{3,10}$",
    min_length = 3,
    max_length = 10,
    example = "RR8"
)]
pub struct OdsCodeSchema(String);

/// A fully qualified DNS name: at least two dot-separated labels of 1 to 63 letters, digits
/// and hyphens (no hyphen first or last in a label), at most 253 characters, the top-level
/// label starting with a letter. Case is normalised to lower.
#[derive(Debug, ToSchema)]
#[schema(
    as = DnsName,
    pattern = r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
    format = Hostname,
    min_length = 3,
    max_length = 253,
    example = "leedscare.org.uk"
)]
pub struct DnsNameSchema(String);

/// An email address: a dot-atom local part (letters, digits and ``!#$%&'*+-/=?^_`{|}~``, dots
/// only between them, at most 64 characters), `@`, and a DNS name as in `DnsName`; at most 254
/// characters.
#[derive(Debug, ToSchema)]
#[schema(
    as = EmailAddress,
    pattern = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
    format = Email,
    min_length = 5,
    max_length = 254,
    example = "ada.lovelace@leedscare.org.uk"
)]
pub struct EmailAddressSchema(String);

/// An organisation's legal name: 2 to 200 characters, no control or invisible formatting
/// characters (zero-width, bidirectional controls, tags), not starting or ending with
/// whitespace.
#[derive(Debug, ToSchema)]
#[schema(
    as = OrganisationName,
    pattern = r"^[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u001f\u007f-\u009f]{0,198}[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$",
    min_length = 2,
    max_length = 200,
    example = "Leeds Community Care"
)]
pub struct OrganisationNameSchema(String);

/// A person's name: 1 to 200 characters, no control or invisible formatting characters
/// (zero-width, bidirectional controls, tags), not starting or ending with whitespace.
#[derive(Debug, ToSchema)]
#[schema(
    as = PersonName,
    pattern = r"^[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u001f\u007f-\u009f]{0,198}[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?$",
    min_length = 1,
    max_length = 200,
    example = "Ada Lovelace"
)]
pub struct PersonNameSchema(String);

/// A short title or job role: 1 to 200 characters, no control or invisible formatting
/// characters (zero-width, bidirectional controls, tags), not starting or ending with
/// whitespace.
#[derive(Debug, ToSchema)]
#[schema(
    as = ShortText,
    pattern = r"^[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u001f\u007f-\u009f]{0,198}[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?$",
    min_length = 1,
    max_length = 200,
    example = "Caldicott Guardian"
)]
pub struct ShortTextSchema(String);

/// Why, for people and the audit trail: 1 to 2000 characters; line breaks and tabs allowed,
/// other control and invisible formatting characters not; not starting or ending with
/// whitespace.
#[derive(Debug, ToSchema)]
#[schema(
    as = Reason,
    pattern = r"^[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]{0,1998}[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?$",
    min_length = 1,
    max_length = 2000,
    example = "Confirmed with the organisation's IT lead by phone."
)]
pub struct ReasonSchema(String);

/// Why the organisation needs federation: 20 to 4000 characters; line breaks and tabs allowed,
/// other control and invisible formatting characters not; not starting or ending with
/// whitespace.
#[derive(Debug, ToSchema)]
#[schema(
    as = BusinessNeed,
    pattern = r"^[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]{18,3998}[^\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$",
    min_length = 20,
    max_length = 4000,
    example = "Our district nurses need to find and email GP practice staff."
)]
pub struct BusinessNeedSchema(String);

/// An ICO data protection register number: 6 to 12 ASCII letters and digits (case is
/// normalised to upper).
#[derive(Debug, ToSchema)]
#[schema(
    as = IcoRegistrationNumber,
    pattern = r"^[A-Za-z0-9]{6,12}$",
    min_length = 6,
    max_length = 12,
    example = "ZA123456"
)]
pub struct IcoRegistrationNumberSchema(String);

/// A detached compact JWS (RFC 7515 appendix F): `BASE64URL(header)..BASE64URL(signature)`.
#[derive(Debug, ToSchema)]
#[schema(
    as = DetachedJws,
    pattern = r"^[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+$",
    min_length = 4,
    max_length = 8192,
    example = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0..kGz2Pq7LwS0tNpXv3yFQ2n0cA1bT5mE9rHdWjU4sOiLxYvZ8aKfR6gBnCeDhIl0mPoQsTuVwXyZ1a2b3c4d5eA"
)]
pub struct DetachedJwsSchema(String);

/// A published agreement template's version: the list is built into the gateway
/// (`api/agreement-templates/`), so the document names every one.
#[derive(Debug)]
pub struct TemplateVersionSchema;

impl utoipa::PartialSchema for TemplateVersionSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let versions: Vec<String> = crate::templates::agreement_templates()
            .into_iter()
            .map(|t| t.version)
            .collect();
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A published agreement template's version (`GET /v1/agreement-templates`).",
            ))
            .examples(versions.first().cloned())
            .enum_values(Some(versions))
            .build()
            .into()
    }
}

impl ToSchema for TemplateVersionSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("TemplateVersion")
    }
}

/// A string schema with one allowed value (a fixed protocol constant).
fn constant(
    value: &str,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description))
        .enum_values(Some([value]))
        .build()
        .into()
}

/// The one grant type the token endpoint issues.
#[derive(Debug)]
pub struct GrantTypeSchema;

impl utoipa::PartialSchema for GrantTypeSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        constant(
            "client_credentials",
            "The grant type: `client_credentials`.",
        )
    }
}

impl ToSchema for GrantTypeSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("GrantType")
    }
}

/// The one client authentication the token endpoint takes (RFC 7523).
#[derive(Debug)]
pub struct ClientAssertionTypeSchema;

impl utoipa::PartialSchema for ClientAssertionTypeSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        constant(
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "The client assertion type: a signed JWT (RFC 7523).",
        )
    }
}

impl ToSchema for ClientAssertionTypeSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("ClientAssertionType")
    }
}

/// The `scope` of a token request: scope names separated by spaces (repeats allowed).
#[derive(Debug)]
pub struct ScopeListSchema;

impl utoipa::PartialSchema for ScopeListSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names = gateway_domain::Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("|");
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "Space-separated scope names (see `scopes_supported` in the server metadata); empty for all the client may have.",
            ))
            .pattern(Some(format!("^ *(?:(?:{names})(?: +(?:{names}))*)? *$")))
            .examples(["organisation:manage"])
            .build()
            .into()
    }
}

impl ToSchema for ScopeListSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("ScopeList")
    }
}

/// Reads an optional JSON integer the way JSON Schema counts one: `234`
/// and `234.0` are the same integer, `234.5` is not an integer. serde's
/// `i64` refuses the second form, which a schema-valid client may send.
pub fn optional_whole_number<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::{Deserialize, Error};
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(whole) = number.as_i64() {
        return Ok(Some(whole));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        _ => Err(D::Error::custom(format!(
            "invalid value: `{number}` is not an integer in range"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::optional_whole_number;

    #[derive(serde::Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "optional_whole_number")]
        n: Option<i64>,
    }

    fn read(json: &str) -> Result<Option<i64>, String> {
        serde_json::from_str::<Holder>(json)
            .map(|h| h.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_in_either_spelling_are_integers() {
        assert_eq!(read(r#"{"n": 234}"#), Ok(Some(234)));
        assert_eq!(read(r#"{"n": 234.0}"#), Ok(Some(234)));
        assert_eq!(read(r#"{"n": -5}"#), Ok(Some(-5)));
        assert_eq!(read(r#"{"n": null}"#), Ok(None));
        assert_eq!(read(r#"{}"#), Ok(None));
    }

    #[test]
    fn fractions_strings_and_huge_floats_are_refused() {
        assert!(read(r#"{"n": 234.5}"#)
            .unwrap_err()
            .contains("not an integer"));
        assert!(read(r#"{"n": 1e300}"#)
            .unwrap_err()
            .contains("not an integer"));
        assert!(read(r#"{"n": "30"}"#).is_err());
    }
}
