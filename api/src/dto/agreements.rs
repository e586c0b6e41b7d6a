//! Agreement templates, partner agreements, signatures, transitions, the review queue and
//! grants.

use chrono::{DateTime, NaiveDate, Utc};
use gateway_domain::agreement::{
    Agreement, AgreementForm, AgreementState, AgreementTemplate, Grant, OdsSelection, ScopeForm,
    Scopes,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::values::{
    DetachedJwsSchema, EmailAddressSchema, OdsCodeSchema, PersonNameSchema, ReasonSchema,
    ShortTextSchema, TemplateVersionSchema,
};
use crate::dto::{AuditEventResponse, EvidenceResponse, OrganisationResponse};
use crate::error::FieldProblem;

/// A published agreement template.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgreementTemplateResponse {
    /// Name this in `template_version` when drafting.
    #[schema(example = "2026-11")]
    pub version: String,
    pub title: String,
    /// Hex SHA-256 of `text`: the template's identity, included in the signed payload.
    pub sha256: String,
    pub text: String,
}

impl From<&AgreementTemplate> for AgreementTemplateResponse {
    fn from(t: &AgreementTemplate) -> Self {
        Self {
            version: t.version.clone(),
            title: t.title.clone(),
            sha256: t.sha256.clone(),
            text: t.text.clone(),
        }
    }
}

/// The published templates.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgreementTemplateListResponse {
    pub items: Vec<AgreementTemplateResponse>,
}

/// A directory entry attribute (`id` and `email` are always included).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AddressBookAttribute)]
pub enum AddressBookAttributeDto {
    DisplayName,
    GivenName,
    Surname,
    JobTitle,
    Department,
    Organisation,
    OfficePhone,
    MobilePhone,
}

/// How much of a calendar a partner sees.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FreeBusyDetail)]
pub enum FreeBusyDetailDto {
    AvailabilityOnly,
    LimitedDetails,
}

/// The address-book part of an agreement.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBookScopeDto {
    /// Entry attributes beyond `id` and `email`.
    #[schema(value_type = Vec<AddressBookAttributeDto>)]
    pub attributes: Vec<String>,
    /// The national organisations (ODS codes, 1 to 1000) whose entries are covered; left out
    /// (or `null`) for all.
    #[schema(value_type = Option<Vec<OdsCodeSchema>>, min_items = 1, max_items = 1000)]
    pub organisations: Option<Vec<String>>,
}

/// The free/busy part of an agreement.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreeBusyScopeDto {
    /// `availability_only` (the default) or `limited_details` (subject and location, granted
    /// only explicitly by the approver).
    #[schema(value_type = Option<FreeBusyDetailDto>)]
    pub detail: Option<String>,
    /// The national organisations (ODS codes, 1 to 1000) whose calendars are covered; left out
    /// for all.
    #[schema(value_type = Option<Vec<OdsCodeSchema>>, min_items = 1, max_items = 1000)]
    pub organisations: Option<Vec<String>>,
}

/// What the agreement asks for: one or both scopes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopesDto {
    #[serde(default, deserialize_with = "object_only")]
    pub address_book: Option<AddressBookScopeDto>,
    #[serde(default, deserialize_with = "object_only")]
    pub free_busy: Option<FreeBusyScopeDto>,
}

/// serde reads a struct from a JSON array too (`[null, null]` for two optional fields); a
/// scope must be an object, as the schema says.
fn object_only<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let Some(map) =
        Option::<serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)?
    else {
        return Ok(None);
    };
    serde_json::from_value(serde_json::Value::Object(map))
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// The agreement's term: both days included, at most 3 years.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TermDto {
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
}

/// The person who signs for the organisation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatoryDto {
    #[schema(value_type = PersonNameSchema)]
    pub name: String,
    /// Their role, e.g. "Caldicott Guardian".
    #[schema(value_type = ShortTextSchema)]
    pub role: String,
    #[schema(value_type = EmailAddressSchema)]
    pub email: String,
}

/// A draft agreement (also the body that replaces a draft).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "template_version": "2026-11",
    "scopes": {
        "address_book": {"attributes": ["display_name", "job_title", "department"], "organisations": ["RR8"]},
        "free_busy": {"detail": "availability_only"}
    },
    "term": {"starts_on": "2026-12-01", "ends_on": "2027-11-30"},
    "signatory": {"name": "Ada Lovelace", "role": "Caldicott Guardian", "email": "ada.lovelace@leedscare.org.uk"}
}))]
pub struct AgreementRequest {
    /// One of the published templates (`GET /v1/agreement-templates`).
    #[schema(value_type = TemplateVersionSchema)]
    pub template_version: String,
    pub scopes: ScopesDto,
    pub term: TermDto,
    pub signatory: SignatoryDto,
}

impl From<&AgreementRequest> for AgreementForm {
    fn from(r: &AgreementRequest) -> Self {
        Self {
            template_version: r.template_version.clone(),
            address_book: r.scopes.address_book.as_ref().map(|s| ScopeForm {
                attributes: Some(s.attributes.clone()),
                detail: None,
                organisations: s.organisations.clone(),
            }),
            free_busy: r.scopes.free_busy.as_ref().map(|s| ScopeForm {
                attributes: None,
                detail: s.detail.clone(),
                organisations: s.organisations.clone(),
            }),
            starts_on: Some(r.term.starts_on),
            ends_on: Some(r.term.ends_on),
            signatory_name: r.signatory.name.clone(),
            signatory_role: r.signatory.role.clone(),
            signatory_email: r.signatory.email.clone(),
        }
    }
}

fn selection(s: &OdsSelection) -> Option<Vec<String>> {
    match s {
        OdsSelection::All => None,
        OdsSelection::Only(codes) => Some(codes.iter().map(ToString::to_string).collect()),
    }
}

impl From<&Scopes> for ScopesDto {
    fn from(s: &Scopes) -> Self {
        Self {
            address_book: s.address_book.as_ref().map(|ab| AddressBookScopeDto {
                attributes: ab
                    .attributes
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
                organisations: selection(&ab.organisations),
            }),
            free_busy: s.free_busy.as_ref().map(|fb| FreeBusyScopeDto {
                detail: Some(fb.detail.as_str().to_owned()),
                organisations: selection(&fb.organisations),
            }),
        }
    }
}

/// The signature on an agreement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignatureResponse {
    /// `valid` while the JWS verifies over the stored payload and the payload is still the
    /// agreement's canonical content.
    #[schema(value_type = SignatureStatusDto)]
    pub status: String,
    /// The detached compact JWS (RFC 7515 appendix F): `header..signature`.
    pub jws: String,
    pub kid: String,
    pub alg: String,
    /// The signer's public key as it was at signing time.
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
    /// The exact bytes signed (RFC 8785 canonical JSON).
    pub payload: String,
    pub signed_at: DateTime<Utc>,
}

/// Whether a signature holds.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SignatureStatus)]
pub enum SignatureStatusDto {
    Missing,
    Valid,
    Invalid,
}

/// The first reviewer's check.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResponse {
    /// The reviewer's subject at the identity provider (reviewers' views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub at: DateTime<Utc>,
    /// The agreement version the check is bound to: any later change voids it.
    pub version: i64,
}

/// A lifecycle state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AgreementState)]
pub enum AgreementStateDto {
    Draft,
    Submitted,
    Approved,
    Rejected,
    Suspended,
    Revoked,
    Expired,
}

impl AgreementStateDto {
    pub fn domain(self) -> AgreementState {
        match self {
            Self::Draft => AgreementState::Draft,
            Self::Submitted => AgreementState::Submitted,
            Self::Approved => AgreementState::Approved,
            Self::Rejected => AgreementState::Rejected,
            Self::Suspended => AgreementState::Suspended,
            Self::Revoked => AgreementState::Revoked,
            Self::Expired => AgreementState::Expired,
        }
    }
}

/// A partner agreement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgreementResponse {
    pub id: uuid::Uuid,
    pub organisation_id: uuid::Uuid,
    pub template_version: String,
    pub template_sha256: String,
    pub scopes: ScopesDto,
    pub term: TermDto,
    pub signatory: SignatoryDto,
    /// The stored state.
    #[schema(value_type = AgreementStateDto)]
    pub state: String,
    /// The state in force now: an approved agreement whose term ended is `expired`, one whose
    /// required evidence lapsed is `suspended`. Transitions act on this one.
    #[schema(value_type = AgreementStateDto)]
    pub effective_state: String,
    /// The reason given with the last transition that took one.
    pub state_reason: Option<String>,
    /// Whether the approver granted the `limited_details` asked for.
    pub limited_details_granted: bool,
    pub signature: Option<SignatureResponse>,
    pub check: Option<CheckResponse>,
    /// Increases with every change and transition; the ETag is this number in quotes.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AgreementResponse {
    pub fn new(a: &Agreement, effective: AgreementState, signature_status: &str) -> Self {
        Self {
            id: a.id.as_uuid(),
            organisation_id: a.organisation_id.as_uuid(),
            template_version: a.template_version.clone(),
            template_sha256: a.template_sha256.clone(),
            scopes: (&a.scopes).into(),
            term: TermDto {
                starts_on: a.term.starts_on,
                ends_on: a.term.ends_on,
            },
            signatory: SignatoryDto {
                name: a.signatory.name.to_string(),
                role: a.signatory.role.to_string(),
                email: a.signatory.email.to_string(),
            },
            state: a.state.as_str().to_owned(),
            effective_state: effective.as_str().to_owned(),
            state_reason: a.state_reason.as_ref().map(ToString::to_string),
            limited_details_granted: a.limited_details_granted,
            signature: a.signature.as_ref().map(|s| SignatureResponse {
                status: signature_status.to_owned(),
                jws: s.jws.clone(),
                kid: s.kid.clone(),
                alg: s.alg.clone(),
                jwk: s.jwk.clone(),
                payload: s.payload.clone(),
                signed_at: s.signed_at,
            }),
            check: a.check.as_ref().map(|c| CheckResponse {
                by: Some(c.by.clone()),
                at: c.at,
                version: c.version.0,
            }),
            version: a.version.0,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

impl AgreementResponse {
    /// The view for the organisation: which reviewer checked stays with the reviewers.
    pub fn for_partner(mut self) -> Self {
        if let Some(check) = self.check.as_mut() {
            check.by = None;
        }
        self
    }
}

/// The organisation's agreements, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgreementListResponse {
    pub items: Vec<AgreementResponse>,
}

/// The signatory's detached JWS over the draft's signing payload.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"jws": "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0..kGz2Pq7LwS0tNpXv3yFQ2n0cA1bT5mE9rHdWjU4sOiLxYvZ8aKfR6gBnCeDhIl0mPoQsTuVwXyZ1a2b3c4d5eA"}))]
pub struct SignatureRequest {
    /// A detached compact JWS (RFC 7515 appendix F): `BASE64URL(header)..BASE64URL(signature)`,
    /// made with one of the organisation's registered keys over the exact bytes of
    /// `GET .../signing-payload`.
    #[schema(value_type = DetachedJwsSchema)]
    pub jws: String,
}

/// A reviewer's action.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ReviewAction)]
pub enum ActionDto {
    Check,
    Approve,
    Reject,
    Suspend,
    Reinstate,
    Revoke,
}

impl ActionDto {
    pub fn domain(self) -> gateway_domain::agreement::Action {
        use gateway_domain::agreement::Action;
        match self {
            Self::Check => Action::Check,
            Self::Approve => Action::Approve,
            Self::Reject => Action::Reject,
            Self::Suspend => Action::Suspend,
            Self::Reinstate => Action::Reinstate,
            Self::Revoke => Action::Revoke,
        }
    }
}

/// One step of the review lifecycle.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"action": "suspend", "reason": "DSPT submission withdrawn"}))]
pub struct TransitionRequestDto {
    pub action: ActionDto,
    /// Required for reject, suspend and revoke; 1 to 2000 characters.
    #[schema(value_type = Option<ReasonSchema>)]
    pub reason: Option<String>,
    /// On approval only: grant the `limited_details` free/busy detail the agreement asks for.
    pub grant_limited_details: Option<bool>,
}

/// An agreement with everything a reviewer weighs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewAgreementResponse {
    pub agreement: AgreementResponse,
    pub organisation: OrganisationResponse,
    pub evidence: Vec<EvidenceResponse>,
    /// DSPT "approaching standards", evidence expiring within 30 days, domains not accredited.
    pub warnings: Vec<String>,
    /// For a submitted agreement: every precondition of approval not met now.
    pub unmet_for_approval: Vec<FieldProblem>,
    /// The agreement's audit trail, oldest first (on the single-agreement view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<AuditEventResponse>>,
}

/// A page of the review queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewQueueResponse {
    pub items: Vec<ReviewAgreementResponse>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<uuid::Uuid>,
}

/// The review queue's filter and paging.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewQueueQuery {
    /// Only agreements in this stored state (default: `submitted`).
    pub state: Option<AgreementStateDto>,
    /// The last agreement id of the previous page.
    pub after: Option<uuid::Uuid>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Why a registration is rejected.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "The ODS code belongs to another organisation, which has confirmed it did not register."}))]
pub struct RejectRegistrationRequest {
    #[schema(value_type = ReasonSchema)]
    pub reason: String,
}

/// The organisation's grant in force now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GrantResponse {
    pub agreement_id: uuid::Uuid,
    /// The scopes granted (free/busy detail as actually granted).
    pub scopes: ScopesDto,
    /// The last day of the agreement's term.
    pub ends_on: NaiveDate,
}

impl From<&Grant> for GrantResponse {
    fn from(g: &Grant) -> Self {
        Self {
            agreement_id: g.agreement_id.as_uuid(),
            scopes: (&Scopes {
                address_book: g.address_book.clone(),
                free_busy: g.free_busy.clone(),
            })
                .into(),
            ends_on: g.ends_on,
        }
    }
}
