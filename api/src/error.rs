//! Every error the API answers with, as RFC 9457 `application/problem+json`.
//!
//! Each kind has a stable `type` (a relative URI under `/problems/`, which the gateway also
//! serves as documentation). Internal detail is logged with its whole cause chain, never sent.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use gateway_domain::services::{Refusal, RefusalKind, ServiceError};
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

/// Domain field errors as sent.
pub(crate) fn field_problems(errors: &[gateway_domain::FieldError]) -> Vec<FieldProblem> {
    errors
        .iter()
        .map(|e| FieldProblem {
            field: e.field.clone(),
            rule: e.rule.to_owned(),
            message: e.message.clone(),
        })
        .collect()
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
    Conflict,
    PreconditionFailed,
    PreconditionRequired,
    RateLimited,
    ServiceUnavailable,
    InternalError,
    InvalidTransition,
    PreconditionsUnmet,
    PersonRequired,
    RoleRequired,
    SignatureInvalid,
    NotADraft,
    EvidenceAlreadyJudged,
    RegistrationNotRejectable,
    OrganisationRejected,
    DocumentNotPdf,
    CsrfRejected,
    GrantInactive,
    RegistrationTokenState,
    BodyTimeout,
    ResyncRequired,
}

/// What a problem kind says about itself: one row of the table below.
#[derive(Debug, Clone, Copy)]
pub struct ProblemInfo {
    pub slug: &'static str,
    pub status: StatusCode,
    pub title: &'static str,
    /// A longer explanation, served at the type URI.
    pub description: &'static str,
}

const fn info(
    slug: &'static str,
    status: StatusCode,
    title: &'static str,
    description: &'static str,
) -> ProblemInfo {
    ProblemInfo {
        slug,
        status,
        title,
        description,
    }
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 31] = [
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
        Self::Conflict,
        Self::PreconditionFailed,
        Self::PreconditionRequired,
        Self::RateLimited,
        Self::ServiceUnavailable,
        Self::InternalError,
        Self::InvalidTransition,
        Self::PreconditionsUnmet,
        Self::PersonRequired,
        Self::RoleRequired,
        Self::SignatureInvalid,
        Self::NotADraft,
        Self::EvidenceAlreadyJudged,
        Self::RegistrationNotRejectable,
        Self::OrganisationRejected,
        Self::DocumentNotPdf,
        Self::CsrfRejected,
        Self::GrantInactive,
        Self::RegistrationTokenState,
        Self::BodyTimeout,
        Self::ResyncRequired,
    ];

    /// The one table of problem kinds: slug, status, title and description together.
    pub fn info(self) -> ProblemInfo {
        use StatusCode as S;
        match self {
            Self::MalformedRequest => info("malformed-request", S::BAD_REQUEST, "The request could not be read", "The body is not valid JSON, has a field of the wrong type, lacks a required field or has a field the operation does not know. `errors` names the field. Nothing was changed."),
            Self::ValidationFailed => info("validation-failed", S::UNPROCESSABLE_ENTITY, "The request has invalid fields", "The body is well-formed but breaks one or more rules. `errors` lists every field with the rule it broke. Nothing was changed."),
            Self::UnsupportedMediaType => info("unsupported-media-type", S::UNSUPPORTED_MEDIA_TYPE, "Unsupported content type", "Send JSON bodies with Content-Type: application/json (PATCH also accepts application/merge-patch+json); evidence uploads may also be multipart/form-data."),
            Self::PayloadTooLarge => info("payload-too-large", S::PAYLOAD_TOO_LARGE, "The request body is too large", "The body is larger than the gateway accepts. Nothing was changed."),
            Self::Unauthorized => info("unauthorized", S::UNAUTHORIZED, "Authentication required", "Send a valid credential: a bearer token in the Authorization header (registration token, gateway access token or identity-provider token, as the operation says) or, for reviewers, a session from /auth/login."),
            Self::Forbidden => info("forbidden", S::FORBIDDEN, "Not allowed", "You are authenticated but lack the role or scope this operation needs."),
            Self::NotFound => info("not-found", S::NOT_FOUND, "Not found", "No such resource is visible to you. The gateway does not say whether a resource exists when it belongs to someone else."),
            Self::MethodNotAllowed => info("method-not-allowed", S::METHOD_NOT_ALLOWED, "Method not allowed", "The resource does not support this method."),
            Self::DomainTaken => info("domain-taken", S::CONFLICT, "Domain held by another organisation", "The domain, or a domain it is under, has been verified by another organisation: a verified domain belongs to that organisation and blocks its subdomains for everyone else. Unverified claims never block. Nothing was changed."),
            Self::OdsCodeTaken => info("ods-code-taken", S::CONFLICT, "ODS code held by another organisation", "Another organisation with an approved agreement holds this ODS code. Registrations alone never hold a code. Nothing was changed."),
            Self::Conflict => info("conflict", S::CONFLICT, "Conflicting change", "The change would break a uniqueness rule (for example a second agreement in force for one organisation). Nothing was changed."),
            Self::PreconditionFailed => info("precondition-failed", S::PRECONDITION_FAILED, "The resource has changed", "The ETag in If-Match is not the resource's current one: someone changed it since you read it. Read it again, re-apply your change, and send the new ETag."),
            Self::PreconditionRequired => info("precondition-required", S::PRECONDITION_REQUIRED, "If-Match required", "Changes need an If-Match header with the ETag from your last read, so concurrent changes cannot silently overwrite each other."),
            Self::RateLimited => info("rate-limited", S::TOO_MANY_REQUESTS, "Too many requests", "Slow down: wait for the number of seconds in Retry-After."),
            Self::ServiceUnavailable => info("service-unavailable", S::SERVICE_UNAVAILABLE, "Service unavailable", "The gateway cannot reach a service it depends on, or its database stayed busy. Retry after the number of seconds in Retry-After."),
            Self::InternalError => info("internal-error", S::INTERNAL_SERVER_ERROR, "Internal error", "The gateway failed. The failure was logged with the request id from the X-Request-Id header."),
            Self::InvalidTransition => info("invalid-transition", S::CONFLICT, "Not allowed from this state", "The agreement's current (effective) state does not allow this action. Rejected, revoked and expired agreements are final: start a new agreement. Nothing was changed."),
            Self::PreconditionsUnmet => info("preconditions-unmet", S::UNPROCESSABLE_ENTITY, "Preconditions not met", "The action is allowed from this state but its preconditions are not met. `errors` lists every unmet one (field and rule). Nothing was changed."),
            Self::PersonRequired => info("person-required", S::FORBIDDEN, "A signed-in person is required", "Review actions that change state must be taken by a person (a signed-in session, or a token from the identity provider's authorization-code flow). Automation tokens are read-only."),
            Self::RoleRequired => info("role-required", S::FORBIDDEN, "Role required", "The action needs a reviewer role you do not hold: checking needs `reviewer`; approving, rejecting, suspending, reinstating and revoking need `approver`."),
            Self::SignatureInvalid => info("signature-invalid", S::UNPROCESSABLE_ENTITY, "The signature does not verify", "The detached JWS must be made with one of the organisation's registered keys over exactly the bytes of GET .../signing-payload for the draft's current content. Nothing was stored."),
            Self::NotADraft => info("not-a-draft", S::CONFLICT, "The agreement is not a draft", "Only a draft can be changed, signed or submitted. Start a new agreement to change terms."),
            Self::EvidenceAlreadyJudged => info("evidence-already-judged", S::CONFLICT, "Evidence already judged", "A judged (or superseded) evidence item is immutable. The organisation submits a new item instead."),
            Self::RegistrationNotRejectable => info("registration-not-rejectable", S::CONFLICT, "The registration cannot be rejected", "An organisation that has had an approved agreement cannot have its registration rejected: revoke the agreement instead."),
            Self::OrganisationRejected => info("organisation-rejected", S::CONFLICT, "The registration was rejected", "Reviewers rejected this organisation's registration; its claims no longer count. Register again if this was a mistake."),
            Self::DocumentNotPdf => info("document-not-pdf", S::UNSUPPORTED_MEDIA_TYPE, "The document is not a PDF", "Evidence documents must be PDF files, recognised by their content (not their name or declared type). Nothing was stored."),
            Self::CsrfRejected => info("csrf-rejected", S::FORBIDDEN, "Cross-site request refused", "A change made with the reviewer session cookie must come from the gateway's own origin (Origin header) and carry the session's X-CSRF-Token (from GET /auth/me)."),
            Self::GrantInactive => info("grant-inactive", S::FORBIDDEN, "No agreement in force", "The token's data scope is no longer backed by an approved agreement in force: it was suspended, revoked, expired, or its required evidence lapsed. This is checked on every request."),
            Self::BodyTimeout => info("body-timeout", S::REQUEST_TIMEOUT, "The request body came too slowly", "The whole body must arrive within the gateway's body deadline (`server.body_timeout_seconds`) of the request starting. Nothing was changed: send it again."),
            Self::ResyncRequired => info("resync-required", S::GONE, "Resync from scratch", "The changes this cursor needs are no longer kept (tombstones and changes are kept for `address_book.retention_days`, 180 by default), or the agreement's view changed since the cursor was issued (other organisations or attributes, or a new agreement). Discard the local copy and start again without a cursor: the first page of the snapshot says `reset: true`."),
            Self::RegistrationTokenState => info("registration-token-state", S::CONFLICT, "Not allowed in the registration token's state", "Revoking needs a registration token in force; issuing a fresh one needs the token revoked first. Nothing was changed."),
        }
    }

    pub fn slug(self) -> &'static str {
        self.info().slug
    }

    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.slug() == slug)
    }

    pub fn type_uri(self) -> String {
        format!("/problems/{}", self.slug())
    }

    pub fn status(self) -> StatusCode {
        self.info().status
    }

    pub fn title(self) -> &'static str {
        self.info().title
    }

    pub fn description(self) -> &'static str {
        self.info().description
    }
}

/// Domain refusals, each its own problem kind.
fn refusal_kind(kind: RefusalKind) -> ProblemKind {
    match kind {
        RefusalKind::InvalidTransition => ProblemKind::InvalidTransition,
        RefusalKind::PreconditionsUnmet => ProblemKind::PreconditionsUnmet,
        RefusalKind::PersonRequired => ProblemKind::PersonRequired,
        RefusalKind::RoleRequired => ProblemKind::RoleRequired,
        RefusalKind::SignatureInvalid => ProblemKind::SignatureInvalid,
        RefusalKind::NotADraft => ProblemKind::NotADraft,
        RefusalKind::EvidenceAlreadyJudged => ProblemKind::EvidenceAlreadyJudged,
        RefusalKind::RegistrationNotRejectable => ProblemKind::RegistrationNotRejectable,
        RefusalKind::OrganisationRejected => ProblemKind::OrganisationRejected,
        RefusalKind::DocumentNotPdf => ProblemKind::DocumentNotPdf,
        RefusalKind::RegistrationTokenState => ProblemKind::RegistrationTokenState,
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
    #[error("the body did not arrive in time")]
    BodyTimeout,
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
    #[error("refused: {}", .0.detail)]
    Refused(Refusal),
    #[error("cross-site request refused: {0}")]
    Csrf(&'static str),
    #[error("no grant in force")]
    GrantInactive,
    #[error("resync required: {0}")]
    Gone(&'static str),
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
            Self::BodyTimeout => ProblemKind::BodyTimeout,
            Self::Unauthorized(_) => ProblemKind::Unauthorized,
            Self::Forbidden(_) => ProblemKind::Forbidden,
            Self::NotFound => ProblemKind::NotFound,
            Self::MethodNotAllowed => ProblemKind::MethodNotAllowed,
            Self::Conflict(Conflict::DomainTaken(_)) => ProblemKind::DomainTaken,
            Self::Conflict(Conflict::OdsCodeTaken(_)) => ProblemKind::OdsCodeTaken,
            Self::Conflict(Conflict::Unique { .. } | Conflict::EmailTaken(_)) => {
                ProblemKind::Conflict
            }
            Self::Gone(_) => ProblemKind::ResyncRequired,
            Self::Refused(refusal) => refusal_kind(refusal.kind),
            Self::Csrf(_) => ProblemKind::CsrfRejected,
            Self::GrantInactive => ProblemKind::GrantInactive,
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
                Some(field_problems(&validation.0)),
            ),
            Self::Refused(refusal) => (
                refusal.detail.clone(),
                (!refusal.unmet.is_empty()).then(|| field_problems(&refusal.unmet)),
            ),
            Self::Csrf(detail) => ((*detail).to_owned(), None),
            Self::GrantInactive => (
                "no approved agreement is in force for this organisation now".to_owned(),
                None,
            ),
            Self::UnsupportedMediaType(detail) => (detail.clone(), None),
            Self::PayloadTooLarge { limit } => {
                (format!("the body may be at most {limit} bytes"), None)
            }
            Self::BodyTimeout => (
                "the request body did not arrive within the gateway's deadline".to_owned(),
                None,
            ),
            Self::Unauthorized(detail) => ((*detail).to_owned(), None),
            Self::Gone(detail) => ((*detail).to_owned(), None),
            Self::Forbidden(detail) => (detail.clone(), None),
            Self::NotFound => ("no such resource".to_owned(), None),
            Self::MethodNotAllowed => (
                "this resource does not support that method".to_owned(),
                None,
            ),
            Self::Conflict(Conflict::Unique { .. }) => (
                "the change conflicts with the current state of another record".to_owned(),
                None,
            ),
            Self::Conflict(conflict) => {
                let (field, rule) = match conflict {
                    Conflict::DomainTaken(_) => ("domains", "unique_domain"),
                    Conflict::EmailTaken(_) => ("email", "email_unique"),
                    _ => ("ods_code", "unique_ods_code"),
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
            RepositoryError::Internal(cause) => Self::Internal(cause),
            corrupt @ RepositoryError::Corrupt(_) => Self::internal(corrupt),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => Self::NotFound,
            ServiceError::Invalid(errors) => Self::Validation(errors),
            ServiceError::Refused(refusal) => Self::Refused(refusal),
            ServiceError::Stale => Self::PreconditionFailed,
            ServiceError::PreconditionRequired => Self::PreconditionRequired(
                "send If-Match with the ETag from your last read of this resource",
            ),
            ServiceError::Storage(error) => error.into(),
            ServiceError::Unavailable(cause) => Self::Unavailable(cause.into()),
            ServiceError::RateLimited {
                retry_after_seconds,
            } => Self::RateLimited {
                retry_after_seconds,
            },
            ServiceError::Gone => Self::Gone(
                "the changes this cursor needs are no longer kept: start again without a cursor",
            ),
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
