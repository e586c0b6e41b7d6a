//! Registration: the organisation as registered, created and patched.

use chrono::{DateTime, Utc};
use gateway_domain::organisation::{ChangeForm, ContactForm, RegistrationForm};
use gateway_domain::{Contact, Organisation};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::dto::values::{
    BusinessNeedSchema, DnsNameSchema, EmailAddressSchema, OdsCodeSchema, OrganisationNameSchema,
    PersonNameSchema, ReasonSchema,
};
use crate::error::{field_problems, FieldProblem};

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
    #[schema(value_type = PersonNameSchema)]
    pub name: String,
    #[schema(value_type = EmailAddressSchema)]
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
    #[schema(value_type = OdsCodeSchema)]
    pub ods_code: String,
    /// Legal name, 2 to 200 characters.
    #[schema(value_type = OrganisationNameSchema)]
    pub name: String,
    #[schema(value_type = CareCategoryDto)]
    pub category: String,
    #[schema(value_type = ExchangeVersionDto)]
    pub exchange_version: String,
    /// 1 to 238 email domains the organisation sends from. `nhs.net` and its subdomains, the
    /// retired GSi domains (`*.gcsx.gov.uk` and kin) and public suffixes (`org.uk`, `nhs.uk`,
    /// ...) cannot be claimed. Each starts `unverified` until proven with a DNS TXT record; a
    /// domain equal to or under a domain another organisation has verified is refused (409),
    /// and so is the same name listed twice in any case.
    #[schema(value_type = BTreeSet<DnsNameSchema>, min_items = 1, max_items = 238)]
    pub domains: Vec<String>,
    pub contacts: ContactsDto,
    /// Why the organisation needs federation, 20 to 4000 characters.
    #[schema(value_type = BusinessNeedSchema)]
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
    #[schema(value_type = OrganisationNameSchema, required = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = CareCategoryDto, required = false)]
    pub category: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = ExchangeVersionDto, required = false)]
    pub exchange_version: Option<String>,
    /// Replaces the whole list of domains (the rules of registration apply).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = BTreeSet<DnsNameSchema>, required = false, min_items = 1, max_items = 238)]
    pub domains: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub contacts: Option<ContactsPatch>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = BusinessNeedSchema, required = false)]
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

/// A domain the organisation has claimed, and how far its ownership is proven.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DomainDto {
    #[schema(example = "leedscare.org.uk")]
    pub name: String,
    /// Whether the domain is on the secure-email accredited list (DCB1596).
    pub accredited: bool,
    /// `unverified` (claimed, not proven; blocks nobody), `verified` (belongs to this
    /// organisation), or `conflict` (another organisation verified it or a domain it is
    /// under: it can never be verified here; remove it).
    #[schema(value_type = DomainVerificationStatusDto)]
    pub verification: String,
    /// When it was verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// How: `dns` (the TXT record) or `manual` (a reviewer, with a reason).
    #[schema(value_type = Option<DomainVerificationMethodDto>)]
    pub method: Option<String>,
    /// Set when maintenance no longer finds the TXT record of a DNS-verified domain: since
    /// when. The domain stays verified; reviewers see a warning.
    pub record_missing_since: Option<DateTime<Utc>>,
    /// The TXT record that proves the domain (shown to the organisation itself only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txt_record: Option<TxtRecordDto>,
}

/// A claimed domain's standing.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DomainVerificationStatus)]
pub enum DomainVerificationStatusDto {
    Unverified,
    Verified,
    Conflict,
}

/// How a domain was verified.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DomainVerificationMethod)]
pub enum DomainVerificationMethodDto {
    Dns,
    Manual,
}

/// The DNS TXT record to publish, then `POST /v1/organisations/{id}/domains/{domain}/verify`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TxtRecordDto {
    #[schema(example = "_federation-gateway.leedscare.org.uk")]
    pub name: String,
    #[schema(example = "federation-gateway-verification=3f1c0e9a7b2d4c5e8f9a0b1c2d3e4f50")]
    pub value: String,
}

impl DomainDto {
    fn new(domain: &gateway_domain::ClaimedDomain, owner: bool) -> Self {
        let verification = domain.verification.as_ref();
        Self {
            name: domain.name.to_string(),
            accredited: domain.accredited,
            verification: domain.status().as_str().to_owned(),
            verified_at: verification.map(|v| v.at),
            method: verification.map(|v| v.method.as_str().to_owned()),
            record_missing_since: domain.record_missing_since,
            txt_record: owner.then(|| TxtRecordDto {
                name: domain.name.txt_record_name(),
                value: domain.token.txt_value(),
            }),
        }
    }
}

/// A reviewer's verification of a domain by hand.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "Confirmed with the organisation's IT lead by phone; their DNS host cannot publish TXT records."}))]
pub struct ManualVerificationRequest {
    /// Why the reviewer is satisfied the organisation controls the domain (1 to 2000
    /// characters), e.g. how it was confirmed.
    #[schema(value_type = ReasonSchema)]
    pub reason: String,
}

/// An approver withdrawing a domain's verification.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "The domain was sold in 2025; the new owner's IT lead confirmed it by letter."}))]
pub struct DomainUnverifyRequest {
    /// Why the verification no longer stands (1 to 2000 characters).
    #[schema(value_type = ReasonSchema)]
    pub reason: String,
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
    /// `active`, or `rejected` by reviewers (its ODS code and domains then stop counting).
    #[schema(value_type = OrganisationStatusDto)]
    pub status: String,
    /// Why reviewers rejected the registration.
    pub status_reason: Option<String>,
    /// Where the organisation stands: shown when the organisation reads itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onboarding: Option<OnboardingDto>,
    /// The registration access token's state (issued, rotated, revoked: when and by whom):
    /// shown to reviewers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_token: Option<crate::dto::RegistrationTokenResponse>,
    /// Increases with every change; the ETag is this number in quotes.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Whether a registration stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = OrganisationStatus)]
pub enum OrganisationStatusDto {
    Active,
    Rejected,
}

/// What the organisation still needs, each as a field and a rule with a sentence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OnboardingDto {
    /// Before an agreement can be submitted (keys, a signed draft).
    pub missing_for_submission: Vec<FieldProblem>,
    /// Before reviewers can approve it (evidence accepted and unexpired, a submitted agreement, a reviewer's check).
    pub missing_for_approval: Vec<FieldProblem>,
}

impl From<&gateway_domain::services::agreements::OnboardingStatus> for OnboardingDto {
    fn from(status: &gateway_domain::services::agreements::OnboardingStatus) -> Self {
        Self {
            missing_for_submission: field_problems(&status.missing_for_submission),
            missing_for_approval: field_problems(&status.missing_for_approval),
        }
    }
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
                .map(|d| DomainDto::new(d, false))
                .collect(),
            contacts: ContactsDto {
                ig_lead: (&org.contacts.ig_lead).into(),
                technical: (&org.contacts.technical).into(),
            },
            business_need: org.business_need.to_string(),
            status: org.status.as_str().to_owned(),
            status_reason: org.status_reason.as_ref().map(ToString::to_string),
            onboarding: None,
            registration_token: None,
            version: org.version.0,
            created_at: org.created_at,
            updated_at: org.updated_at,
        }
    }
}

impl OrganisationResponse {
    /// The organisation as reviewers read it: with its registration token's state.
    pub fn for_reviewers(
        org: &Organisation,
        token: Option<&gateway_domain::registration_token::RegistrationTokenStatus>,
    ) -> Self {
        let mut response = Self::from(org);
        response.registration_token = token.map(crate::dto::RegistrationTokenResponse::from);
        response
    }

    /// The organisation as it reads itself: with the TXT records to publish.
    pub fn for_owner(org: &Organisation) -> Self {
        let mut response = Self::from(org);
        response.domains = org
            .domains
            .iter()
            .map(|d| DomainDto::new(d, true))
            .collect();
        response
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
