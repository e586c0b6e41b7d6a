//! Wire types: what the API reads and writes as JSON, documented for OpenAPI. Joined to the
//! domain with `From`; never stored.

use chrono::{DateTime, Utc};
use gateway_domain::organisation::{ChangeForm, ContactForm, RegistrationForm};
use gateway_domain::{Contact, Organisation};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// The kind of care environment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CareCategory)]
pub enum CareCategoryDto {
    NhsTrust,
    GpPractice,
    SocialCareProvider,
    LocalAuthority,
    Hospice,
    IndependentHealthcareProvider,
    Pharmacy,
    OtherCareProvider,
}

/// The partner's Exchange platform. Federation needs Exchange 2010 or later; older versions
/// (e.g. `exchange_2007`) are refused with rule `minimum_version`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[schema(as = ExchangeVersion)]
pub enum ExchangeVersionDto {
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

/// A named person and their email address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactDto {
    /// 1 to 200 characters.
    #[schema(example = "Ada Lovelace", min_length = 1)]
    pub name: String,
    #[schema(example = "ada.lovelace@leedscare.org.uk", min_length = 3)]
    pub email: String,
}

/// The organisation's information-governance lead and technical contact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactsDto {
    pub ig_lead: ContactDto,
    pub technical: ContactDto,
}

impl From<&ContactDto> for ContactForm {
    fn from(dto: &ContactDto) -> Self {
        Self {
            name: dto.name.clone(),
            email: dto.email.clone(),
        }
    }
}

impl From<&Contact> for ContactDto {
    fn from(contact: &Contact) -> Self {
        Self {
            name: contact.name.to_string(),
            email: contact.email.to_string(),
        }
    }
}

/// A registration of an external care organisation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "ods_code": "AB123",
    "name": "Leeds Community Care",
    "category": "social_care_provider",
    "exchange_version": "exchange_2016",
    "domains": ["leedscare.org.uk"],
    "contacts": {
        "ig_lead": {"name": "Ada Lovelace", "email": "ada.lovelace@leedscare.org.uk"},
        "technical": {"name": "Alan Turing", "email": "alan.turing@leedscare.org.uk"}
    },
    "business_need": "Our district nurses need to find and email GP practice staff."
}))]
pub struct RegistrationRequest {
    /// The organisation's ODS code: 3 to 10 letters and digits (case is normalised to upper).
    #[schema(min_length = 3)]
    pub ods_code: String,
    /// Legal name, 2 to 200 characters.
    #[schema(min_length = 2)]
    pub name: String,
    #[schema(value_type = CareCategoryDto)]
    pub category: String,
    #[schema(value_type = ExchangeVersionDto)]
    pub exchange_version: String,
    /// 1 to 238 email domains the organisation sends from. `nhs.net` and its subdomains, and
    /// the retired GSi domains (`*.gcsx.gov.uk` and kin), cannot be claimed; a domain belongs
    /// to one organisation only.
    #[schema(min_items = 1, max_items = 238)]
    pub domains: Vec<String>,
    pub contacts: ContactsDto,
    /// Why the organisation needs federation, 20 to 4000 characters.
    #[schema(min_length = 20)]
    pub business_need: String,
}

impl From<&RegistrationRequest> for RegistrationForm {
    fn from(dto: &RegistrationRequest) -> Self {
        Self {
            ods_code: dto.ods_code.clone(),
            name: dto.name.clone(),
            category: dto.category.clone(),
            exchange_version: dto.exchange_version.clone(),
            domains: dto.domains.clone(),
            ig_lead: (&dto.contacts.ig_lead).into(),
            technical: (&dto.contacts.technical).into(),
            business_need: dto.business_need.clone(),
        }
    }
}

/// Present fields must not be `null`: in a merge patch `null` would mean "remove", and these
/// fields cannot be removed.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)?
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("must not be null: this field cannot be removed"))
}

/// Contacts to replace; each one given replaces that contact whole.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactsPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub ig_lead: Option<ContactDto>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub technical: Option<ContactDto>,
}

/// A JSON merge patch (RFC 7396) of a registration: fields left out stay as they are. The
/// ODS code cannot change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Leeds Community Care CIC", "domains": ["leedscare.org.uk", "mail.leedscare.org.uk"]}))]
pub struct OrganisationPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, min_length = 2)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = CareCategoryDto, required = false)]
    pub category: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = ExchangeVersionDto, required = false)]
    pub exchange_version: Option<String>,
    /// Replaces the whole list of domains.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, min_items = 1, max_items = 238)]
    pub domains: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub contacts: Option<ContactsPatch>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, min_length = 20)]
    pub business_need: Option<String>,
}

impl From<&OrganisationPatch> for ChangeForm {
    fn from(dto: &OrganisationPatch) -> Self {
        let contacts = dto.contacts.clone().unwrap_or_default();
        Self {
            name: dto.name.clone(),
            category: dto.category.clone(),
            exchange_version: dto.exchange_version.clone(),
            domains: dto.domains.clone(),
            ig_lead: contacts.ig_lead.as_ref().map(ContactForm::from),
            technical: contacts.technical.as_ref().map(ContactForm::from),
            business_need: dto.business_need.clone(),
        }
    }
}

/// A domain the organisation has claimed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DomainDto {
    #[schema(example = "leedscare.org.uk")]
    pub name: String,
    /// Whether the domain is on the secure-email accredited list (DCB1596).
    pub accredited: bool,
}

/// A registered organisation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrganisationResponse {
    pub id: uuid::Uuid,
    #[schema(example = "AB123")]
    pub ods_code: String,
    pub name: String,
    #[schema(value_type = CareCategoryDto)]
    pub category: String,
    #[schema(value_type = ExchangeVersionDto)]
    pub exchange_version: String,
    pub domains: Vec<DomainDto>,
    pub contacts: ContactsDto,
    pub business_need: String,
    /// Increases with every change; the ETag is this number in quotes.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Organisation> for OrganisationResponse {
    fn from(org: &Organisation) -> Self {
        Self {
            id: org.id.as_uuid(),
            ods_code: org.ods_code.to_string(),
            name: org.name.to_string(),
            category: org.category.as_str().to_owned(),
            exchange_version: org.exchange_version.as_str().to_owned(),
            domains: org
                .domains
                .iter()
                .map(|d| DomainDto {
                    name: d.name.to_string(),
                    accredited: d.accredited,
                })
                .collect(),
            contacts: ContactsDto {
                ig_lead: (&org.contacts.ig_lead).into(),
                technical: (&org.contacts.technical).into(),
            },
            business_need: org.business_need.to_string(),
            version: org.version.0,
            created_at: org.created_at,
            updated_at: org.updated_at,
        }
    }
}

/// The new organisation, with the credential to manage it (RFC 7591 style).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistrationResponse {
    #[serde(flatten)]
    pub organisation: OrganisationResponse,
    /// Bearer token for `GET`/`PATCH` on `registration_client_uri`. Shown only this once:
    /// the gateway stores only its hash.
    pub registration_access_token: String,
    /// Where to read and change this registration.
    pub registration_client_uri: String,
}

/// Liveness or readiness.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "ok")]
    pub status: String,
    /// The database backend, on readiness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// A description of one problem type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemTypeResponse {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub description: String,
}

/// A JSON Web Key Set (RFC 7517) of public signing keys.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "2026-11-key-1", "alg": "EdDSA", "use": "sig", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}))]
pub struct JwksRequest {
    /// 0 to 10 public JWKs: RSA (2048 bits or more; RS256/RS384/RS512), EC P-256 (ES256) or
    /// OKP Ed25519 (EdDSA), each with a unique `kid`. Private members (`d`, `p`, `q`, ...) are
    /// refused.
    #[schema(value_type = Vec<Object>, max_items = 10)]
    pub keys: Vec<serde_json::Value>,
}

/// One registered key and its state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartnerKeyResponse {
    pub kid: String,
    /// The public JWK as stored.
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
    pub added_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Present once the key has gone unused for the configured period: whole days until
    /// `federation-gateway maintenance` removes it. Using the key clears it.
    pub days_until_removal: Option<i64>,
}

/// The organisation's registered keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartnerKeySetResponse {
    pub keys: Vec<PartnerKeyResponse>,
}

/// A token request (RFC 6749 section 4.4 with RFC 7523 client authentication).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"grant_type": "client_credentials", "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJpc3MiOiIuLi4ifQ.c2ln", "scope": "organisation:manage"}))]
pub struct TokenRequest {
    /// `client_credentials`.
    pub grant_type: String,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    pub client_assertion_type: String,
    /// A JWT signed with one of the client's registered keys: `iss` = `sub` = the client id
    /// (the organisation id), `aud` = this token endpoint's URL, `exp` at most 5 minutes
    /// ahead, a fresh `jti`, and `kid` in the header.
    pub client_assertion: String,
    /// Space-separated scopes to ask for; default: all the client may have.
    pub scope: Option<String>,
}

/// An issued access token (RFC 6749 section 5.1).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires (at most 600).
    pub expires_in: u64,
    pub scope: String,
}

/// A token endpoint error (RFC 6749 section 5.2).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OAuthErrorResponse {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unsupported_grant_type` or `invalid_scope`.
    pub error: String,
    pub error_description: String,
}

/// Authorization server metadata (RFC 8414).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
}

/// The gateway's public signing keys (RFC 7517).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JwksResponse {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

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

/// Paging through the audit trail.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditPage {
    /// The last `seq` of the previous page (0 to start).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// One audit event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEventResponse {
    pub seq: i64,
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
}

impl From<gateway_domain::AuditEvent> for AuditEventResponse {
    fn from(event: gateway_domain::AuditEvent) -> Self {
        Self {
            seq: event.seq,
            id: event.id,
            occurred_at: event.occurred_at,
            actor_type: event.actor_type,
            actor_id: event.actor_id,
            action: event.action,
            subject_type: event.subject_type,
            subject_id: event.subject_id,
            request_id: event.request_id,
            details: event.details,
        }
    }
}

/// A page of audit events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditListResponse {
    pub items: Vec<AuditEventResponse>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}
