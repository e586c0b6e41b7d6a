//! Every error the API answers with, as RFC 9457 `application/problem+json`.
//!
//! Each kind has a stable `type` (a relative URI under `/problems/`, which the gateway also
//! serves as documentation). Internal detail is logged with its whole cause chain, never sent.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use gateway_domain::{Conflict, RepositoryError, ValidationErrors};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem details document (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/validation-failed",
    "title": "The request has invalid fields",
    "status": 422,
    "detail": "2 fields break the registration rules",
    "errors": [
        {"field": "exchange_version", "rule": "minimum_version", "message": "exchange_2007 cannot federate: address-book and free/busy federation needs Exchange 2010 or later"},
        {"field": "domains[0]", "rule": "reserved_domain", "message": "nhs.net and its subdomains belong to the national platform and can never be claimed"}
    ]
}))]
pub struct Problem {
    /// Stable identifier of this kind of problem; resolves to its description.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of this kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// For validation problems: each field and the rule it broke.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
}

/// One field that broke one rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    /// Where in the request: `ods_code`, `domains[2]`, `contacts.ig_lead.email`.
    pub field: String,
    /// The rule's stable name, e.g. `required`, `dns_name`, `reserved_domain`.
    pub rule: String,
    /// The rule, explained.
    pub message: String,
}

/// The kinds of problem, by their stable slugs (the last segment of each problem's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    MalformedRequest,
    ValidationFailed,
    UnsupportedMediaType,
    PayloadTooLarge,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    DomainTaken,
    OdsCodeTaken,
    PreconditionFailed,
    PreconditionRequired,
    RateLimited,
    ServiceUnavailable,
    InternalError,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 15] = [
        Self::MalformedRequest,
        Self::ValidationFailed,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::DomainTaken,
        Self::OdsCodeTaken,
        Self::PreconditionFailed,
        Self::PreconditionRequired,
        Self::RateLimited,
        Self::ServiceUnavailable,
        Self::InternalError,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed-request",
            Self::ValidationFailed => "validation-failed",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge => "payload-too-large",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::DomainTaken => "domain-taken",
            Self::OdsCodeTaken => "ods-code-taken",
            Self::PreconditionFailed => "precondition-failed",
            Self::PreconditionRequired => "precondition-required",
            Self::RateLimited => "rate-limited",
            Self::ServiceUnavailable => "service-unavailable",
            Self::InternalError => "internal-error",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.slug() == slug)
    }

    pub fn type_uri(self) -> String {
        format!("/problems/{}", self.slug())
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedRequest => StatusCode::BAD_REQUEST,
            Self::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::DomainTaken | Self::OdsCodeTaken => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedRequest => "The request could not be read",
            Self::ValidationFailed => "The request has invalid fields",
            Self::UnsupportedMediaType => "Unsupported content type",
            Self::PayloadTooLarge => "The request body is too large",
            Self::Unauthorized => "Authentication required",
            Self::Forbidden => "Not allowed",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::DomainTaken => "Domain already registered",
            Self::OdsCodeTaken => "ODS code already registered",
            Self::PreconditionFailed => "The resource has changed",
            Self::PreconditionRequired => "If-Match required",
            Self::RateLimited => "Too many requests",
            Self::ServiceUnavailable => "Service unavailable",
            Self::InternalError => "Internal error",
        }
    }

    /// A longer explanation, served at the type URI.
    pub fn description(self) -> &'static str {
        match self {
            Self::MalformedRequest => "The body is not valid JSON, has a field of the wrong type, lacks a required field or has a field the operation does not know. `errors` names the field. Nothing was changed.",
            Self::ValidationFailed => "The body is well-formed but breaks one or more rules. `errors` lists every field with the rule it broke. Nothing was changed.",
            Self::UnsupportedMediaType => "Send JSON bodies with Content-Type: application/json (PATCH also accepts application/merge-patch+json).",
            Self::PayloadTooLarge => "The body is larger than the gateway accepts. Nothing was changed.",
            Self::Unauthorized => "Send a valid credential: a bearer token in the Authorization header (registration token, gateway access token or identity-provider token, as the operation says) or, for reviewers, a session from /auth/login.",
            Self::Forbidden => "You are authenticated but lack the role or scope this operation needs.",
            Self::NotFound => "No such resource is visible to you. The gateway does not say whether a resource exists when it belongs to someone else.",
            Self::MethodNotAllowed => "The resource does not support this method.",
            Self::DomainTaken => "One of the domains is already registered to another organisation. A domain belongs to one organisation only. Nothing was changed.",
            Self::OdsCodeTaken => "An organisation with this ODS code is already registered. Nothing was changed.",
            Self::PreconditionFailed => "The ETag in If-Match is not the resource's current one: someone changed it since you read it. Read it again, re-apply your change, and send the new ETag.",
            Self::PreconditionRequired => "Changes need an If-Match header with the ETag from your last read, so concurrent changes cannot silently overwrite each other.",
            Self::RateLimited => "Slow down: wait for the number of seconds in Retry-After.",
            Self::ServiceUnavailable => "The gateway cannot reach a service it depends on. Retry later.",
            Self::InternalError => "The gateway failed. The failure was logged with the request id from the X-Request-Id header.",
        }
    }
}

/// What a handler can fail with. `Display` is the internal message (for logs).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {detail}")]
    Malformed {
        detail: String,
        errors: Vec<FieldProblem>,
    },
    #[error("validation failed: {0}")]
    Validation(ValidationErrors),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("payload larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(Conflict),
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("precondition required: {0}")]
    PreconditionRequired(&'static str),
    #[error("rate limited for {retry_after_seconds}s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }

    pub fn kind(&self) -> ProblemKind {
        match self {
            Self::Malformed { .. } => ProblemKind::MalformedRequest,
            Self::Validation(_) => ProblemKind::ValidationFailed,
            Self::UnsupportedMediaType(_) => ProblemKind::UnsupportedMediaType,
            Self::PayloadTooLarge { .. } => ProblemKind::PayloadTooLarge,
            Self::Unauthorized(_) => ProblemKind::Unauthorized,
            Self::Forbidden(_) => ProblemKind::Forbidden,
            Self::NotFound => ProblemKind::NotFound,
            Self::MethodNotAllowed => ProblemKind::MethodNotAllowed,
            Self::Conflict(Conflict::DomainTaken(_)) => ProblemKind::DomainTaken,
            Self::Conflict(Conflict::OdsCodeTaken(_)) => ProblemKind::OdsCodeTaken,
            Self::PreconditionFailed => ProblemKind::PreconditionFailed,
            Self::PreconditionRequired(_) => ProblemKind::PreconditionRequired,
            Self::RateLimited { .. } => ProblemKind::RateLimited,
            Self::Unavailable(_) => ProblemKind::ServiceUnavailable,
            Self::Internal(_) => ProblemKind::InternalError,
        }
    }

    /// The problem document sent to the client: only what is safe to show.
    pub fn problem(&self) -> Problem {
        let kind = self.kind();
        let (detail, errors) = match self {
            Self::Malformed { detail, errors } => (detail.clone(), Some(errors.clone())),
            Self::Validation(validation) => (
                format!(
                    "{} field(s) break the rules: {}",
                    validation.0.len(),
                    validation
                        .0
                        .iter()
                        .map(|e| e.field.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some(
                    validation
                        .0
                        .iter()
                        .map(|e| FieldProblem {
                            field: e.field.clone(),
                            rule: e.rule.to_owned(),
                            message: e.message.clone(),
                        })
                        .collect(),
                ),
            ),
            Self::UnsupportedMediaType(detail) => (detail.clone(), None),
            Self::PayloadTooLarge { limit } => {
                (format!("the body may be at most {limit} bytes"), None)
            }
            Self::Unauthorized(detail) => ((*detail).to_owned(), None),
            Self::Forbidden(detail) => (detail.clone(), None),
            Self::NotFound => ("no such resource".to_owned(), None),
            Self::MethodNotAllowed => (
                "this resource does not support that method".to_owned(),
                None,
            ),
            Self::Conflict(conflict) => {
                let field = match conflict {
                    Conflict::DomainTaken(_) => "domains",
                    Conflict::OdsCodeTaken(_) => "ods_code",
                };
                let rule = match conflict {
                    Conflict::DomainTaken(_) => "unique_domain",
                    Conflict::OdsCodeTaken(_) => "unique_ods_code",
                };
                (
                    conflict.to_string(),
                    Some(vec![FieldProblem {
                        field: field.to_owned(),
                        rule: rule.to_owned(),
                        message: conflict.to_string(),
                    }]),
                )
            }
            Self::PreconditionFailed => (
                "the ETag in If-Match does not match the current version".to_owned(),
                None,
            ),
            Self::PreconditionRequired(detail) => ((*detail).to_owned(), None),
            Self::RateLimited {
                retry_after_seconds,
            } => (format!("retry after {retry_after_seconds} seconds"), None),
            Self::Unavailable(_) => (
                "a service the gateway depends on is unavailable".to_owned(),
                None,
            ),
            Self::Internal(_) => (
                "the gateway failed; the failure was logged".to_owned(),
                None,
            ),
        };
        Problem {
            problem_type: kind.type_uri(),
            title: kind.title().to_owned(),
            status: kind.status().as_u16(),
            detail,
            errors,
        }
    }
}

/// The error and all its sources, for the log.
fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

impl From<RepositoryError> for ApiError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::NotFound => Self::NotFound,
            RepositoryError::VersionMismatch { .. } => Self::PreconditionFailed,
            RepositoryError::Conflict(conflict) => Self::Conflict(conflict),
            RepositoryError::Unavailable(cause) => Self::Unavailable(cause),
            corrupt @ RepositoryError::Corrupt(_) => Self::internal(corrupt),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        Self::internal(error)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind().status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %cause_chain(self), status = status.as_u16(), "request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "request refused");
        }
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        match self {
            Self::Unauthorized(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="federation-gateway""#),
                ));
            }
            Self::RateLimited {
                retry_after_seconds,
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
            }
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_slug_that_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for kind in ProblemKind::ALL {
            assert!(seen.insert(kind.slug()));
            assert_eq!(ProblemKind::from_slug(kind.slug()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                kind.slug(),
                "the documented enum is the slug"
            );
        }
    }

    #[test]
    fn server_errors_never_carry_internal_detail() {
        let secret = std::io::Error::other("password=hunter2 at db.internal:5432");
        for error in [
            ApiError::internal(secret),
            ApiError::Unavailable(Box::new(std::io::Error::other("hunter2"))),
        ] {
            let body = serde_json::to_string(&error.problem()).unwrap();
            assert!(!body.contains("hunter2"), "{body}");
        }
    }
}
