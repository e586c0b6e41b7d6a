//! Reviewers, the organisation list for review and the audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::OrganisationResponse;

/// A reviewer role.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Role)]
pub enum RoleDto {
    Reviewer,
    Approver,
    Auditor,
}

/// The signed-in reviewer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewerResponse {
    /// The identity provider's subject.
    pub subject: String,
    pub name: Option<String>,
    pub email: Option<String>,
    #[schema(value_type = Vec<RoleDto>)]
    pub roles: Vec<String>,
    /// Whether this is a person (only people change state; automation tokens read).
    pub person: bool,
    /// With a session: send it as `X-CSRF-Token` on every change made with the session cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

impl From<&gateway_domain::ReviewerIdentity> for ReviewerResponse {
    fn from(identity: &gateway_domain::ReviewerIdentity) -> Self {
        Self {
            subject: identity.subject.clone(),
            name: identity.name.clone(),
            email: identity.email.clone(),
            roles: identity
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            person: identity.person,
            csrf_token: None,
        }
    }
}

/// Paging through a list: items after `after`, at most `limit`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrganisationPage {
    /// The last organisation id of the previous page.
    pub after: Option<uuid::Uuid>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// A page of organisations.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrganisationListResponse {
    pub items: Vec<OrganisationResponse>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<uuid::Uuid>,
}

/// One audit event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEventResponse {
    /// Its place in the sealed trail (0, 1, 2, ...); absent until the sequencer seals it
    /// (within a fraction of a second).
    pub position: Option<i64>,
    pub id: uuid::Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub subject_type: String,
    pub subject_id: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The chain hash: SHA-256(previous record's hash || canonical record), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl From<gateway_domain::AuditEvent> for AuditEventResponse {
    fn from(event: gateway_domain::AuditEvent) -> Self {
        Self {
            position: event.position,
            id: event.id,
            occurred_at: event.occurred_at,
            actor_type: event.actor_type,
            actor_id: event.actor_id,
            action: event.action,
            subject_type: event.subject_type,
            subject_id: event.subject_id,
            request_id: event.request_id,
            details: event.details,
            hash: None,
        }
    }
}

impl From<gateway_domain::SealedRecord> for AuditEventResponse {
    fn from(record: gateway_domain::SealedRecord) -> Self {
        let mut response = Self::from(record.event);
        response.hash = Some(record.hash);
        response
    }
}
