//! The registration access token's state, a freshly minted token (shown once), and the
//! reviewers' requests that change the token.

use chrono::{DateTime, Utc};
use gateway_domain::registration_token::{
    RegistrationTokenState, RegistrationTokenStatus, TokenIssuer,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether the organisation holds a working registration token.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RegistrationTokenState)]
pub enum RegistrationTokenStateDto {
    Active,
    Revoked,
}

/// Who started the line of tokens in force.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RegistrationTokenIssuer)]
pub enum RegistrationTokenIssuerDto {
    /// The organisation, by registering.
    Registration,
    /// An approver, after a revocation (handed over out of band).
    Approver,
}

/// The state of an organisation's registration access token: never the token itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistrationTokenResponse {
    #[schema(value_type = RegistrationTokenStateDto)]
    pub state: RegistrationTokenStateDto,
    /// When the line of tokens in force began: registration, or an approver's fresh token.
    pub issued_at: DateTime<Utc>,
    #[schema(value_type = RegistrationTokenIssuerDto)]
    pub issued_by: RegistrationTokenIssuerDto,
    /// The approver's subject, when an approver issued it.
    pub issued_by_subject: Option<String>,
    /// The organisation's latest rotation since then.
    pub rotated_at: Option<DateTime<Utc>>,
    /// How many rotations since then.
    pub rotations: i64,
    /// The latest revocation (still shown after a fresh token was issued).
    pub revoked_at: Option<DateTime<Utc>>,
    /// The approver who revoked it (identity-provider subject).
    pub revoked_by: Option<String>,
    pub revocation_reason: Option<String>,
}

impl From<&RegistrationTokenStatus> for RegistrationTokenResponse {
    fn from(status: &RegistrationTokenStatus) -> Self {
        let (issued_by, issued_by_subject) = match &status.issued_by {
            TokenIssuer::Registration => (RegistrationTokenIssuerDto::Registration, None),
            TokenIssuer::Approver(subject) => {
                (RegistrationTokenIssuerDto::Approver, Some(subject.clone()))
            }
        };
        Self {
            state: match status.state {
                RegistrationTokenState::Active => RegistrationTokenStateDto::Active,
                RegistrationTokenState::Revoked => RegistrationTokenStateDto::Revoked,
            },
            issued_at: status.issued_at,
            issued_by,
            issued_by_subject,
            rotated_at: status.rotated_at,
            rotations: status.rotations,
            revoked_at: status.revoked_at,
            revoked_by: status.revoked_by.clone(),
            revocation_reason: status
                .revocation_reason
                .as_ref()
                .map(|r| r.as_str().to_owned()),
        }
    }
}

/// A new registration access token: shown only this once (the gateway stores its hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedRegistrationTokenResponse {
    /// Bearer token for the organisation's registration, keys and this rotation endpoint.
    pub registration_access_token: String,
    /// Where to read and change the registration.
    pub registration_client_uri: String,
    pub registration_token: RegistrationTokenResponse,
}

/// Why an approver revokes a registration token, or issues a fresh one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "The technical contact reported the token pasted into a public ticket."}))]
pub struct RegistrationTokenActionRequest {
    /// Why (1 to 2000 characters).
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}
