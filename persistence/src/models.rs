//! Row types: private to this crate, converted to and from domain entities.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gateway_domain::audit::AuditEvent;
use gateway_domain::contact::{Contact, Contacts, EmailAddress};
use gateway_domain::text::{BusinessNeed, OrganisationName, PersonName, Reason};
use gateway_domain::{
    CareCategory, ClaimedDomain, ExchangeVersion, NewAuditEvent, OdsCode, Organisation,
    OrganisationId, OrganisationStatus, RepositoryError, Version,
};
use uuid::Uuid;

use crate::schema::{audit_events, organisation_domains, organisations, registration_credentials};

pub(crate) fn to_db_time(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

pub(crate) fn from_db_time(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = organisations, treat_none_as_null = true)]
pub(crate) struct OrganisationRow {
    pub id: String,
    pub ods_code: String,
    pub name: String,
    pub category: String,
    pub exchange_version: String,
    pub ig_lead_name: String,
    pub ig_lead_email: String,
    pub technical_name: String,
    pub technical_email: String,
    pub business_need: String,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub status: String,
    pub status_reason: Option<String>,
}

impl OrganisationRow {
    pub fn from_entity(org: &Organisation) -> Self {
        Self {
            id: org.id.to_string(),
            ods_code: org.ods_code.to_string(),
            name: org.name.to_string(),
            category: org.category.as_str().to_owned(),
            exchange_version: org.exchange_version.as_str().to_owned(),
            ig_lead_name: org.contacts.ig_lead.name.to_string(),
            ig_lead_email: org.contacts.ig_lead.email.to_string(),
            technical_name: org.contacts.technical.name.to_string(),
            technical_email: org.contacts.technical.email.to_string(),
            business_need: org.business_need.to_string(),
            version: org.version.0,
            created_at: to_db_time(org.created_at),
            updated_at: to_db_time(org.updated_at),
            status: org.status.as_str().to_owned(),
            status_reason: org.status_reason.as_ref().map(|r| r.to_string()),
        }
    }

    /// Rebuilds the entity; stored data that no longer passes the rules is reported as
    /// corrupt rather than silently served.
    pub fn into_entity(self, domains: Vec<ClaimedDomain>) -> Result<Organisation, RepositoryError> {
        let corrupt = |field: &str, why: String| {
            RepositoryError::Corrupt(format!("organisation {}: {field}: {why}", self.id))
        };
        let id = Uuid::parse_str(&self.id).map_err(|e| corrupt("id", e.to_string()))?;
        Ok(Organisation {
            id: OrganisationId::from_uuid(id),
            status: OrganisationStatus::parse(&self.status)
                .ok_or_else(|| corrupt("status", format!("unknown status {:?}", self.status)))?,
            status_reason: self
                .status_reason
                .as_deref()
                .map(Reason::parse)
                .transpose()
                .map_err(|e| corrupt("status_reason", e.message))?,
            ods_code: OdsCode::parse(&self.ods_code).map_err(|e| corrupt("ods_code", e.message))?,
            name: OrganisationName::parse(&self.name).map_err(|e| corrupt("name", e.message))?,
            category: CareCategory::parse(&self.category)
                .map_err(|e| corrupt("category", e.message))?,
            exchange_version: ExchangeVersion::parse(&self.exchange_version)
                .map_err(|e| corrupt("exchange_version", e.message))?,
            domains,
            contacts: Contacts {
                ig_lead: Contact {
                    name: PersonName::parse(&self.ig_lead_name)
                        .map_err(|e| corrupt("ig_lead_name", e.message))?,
                    email: EmailAddress::parse(&self.ig_lead_email)
                        .map_err(|e| corrupt("ig_lead_email", e.message))?,
                },
                technical: Contact {
                    name: PersonName::parse(&self.technical_name)
                        .map_err(|e| corrupt("technical_name", e.message))?,
                    email: EmailAddress::parse(&self.technical_email)
                        .map_err(|e| corrupt("technical_email", e.message))?,
                },
            },
            business_need: BusinessNeed::parse(&self.business_need)
                .map_err(|e| corrupt("business_need", e.message))?,
            version: Version(self.version),
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = organisation_domains)]
pub(crate) struct DomainRow {
    pub organisation_id: String,
    pub domain: String,
    pub position: i32,
    /// False once the organisation is no longer active: the claim stays on record but no
    /// longer holds the domain.
    pub active: bool,
    pub verification_token: String,
    /// Set once the claim is proven; only a verified, active claim holds the name.
    pub verified_at: Option<NaiveDateTime>,
    pub verification_method: Option<String>,
    pub verified_by: Option<String>,
    pub verification_reason: Option<String>,
    pub record_missing_since: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = registration_credentials)]
pub(crate) struct CredentialRow {
    pub selector: String,
    pub organisation_id: String,
    pub secret_sha256: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub(crate) struct NewAuditRow {
    pub id: String,
    pub occurred_at: NaiveDateTime,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub subject_type: String,
    pub subject_id: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
    pub organisation_id: Option<String>,
}

impl NewAuditRow {
    /// Every string bounded first ([`NewAuditEvent::bounded`]): whatever a writer passed, a
    /// record never stores more than a short excerpt of a caller's text.
    pub fn from_event(event: &NewAuditEvent) -> Self {
        let event = &event.bounded();
        Self {
            organisation_id: event.organisation(),
            id: Uuid::now_v7().to_string(),
            occurred_at: to_db_time(event.occurred_at),
            actor_type: event.actor.kind().to_owned(),
            actor_id: event.actor.id(),
            action: event.action.as_str().to_owned(),
            subject_type: event.subject_type.to_owned(),
            subject_id: event.subject_id.clone(),
            request_id: event.request_id.clone(),
            details: event.details.to_string(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub(crate) struct AuditRow {
    pub seq: i64,
    pub log_position: Option<i64>,
    pub hash: Option<String>,
    pub organisation_id: Option<String>,
    pub id: String,
    pub occurred_at: NaiveDateTime,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub subject_type: String,
    pub subject_id: Option<String>,
    pub request_id: Option<String>,
    pub details: String,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = RepositoryError;

    fn try_from(row: AuditRow) -> Result<Self, Self::Error> {
        let corrupt =
            |why: String| RepositoryError::Corrupt(format!("audit event {}: {why}", row.seq));
        Ok(AuditEvent {
            seq: row.seq,
            position: row.log_position,
            id: Uuid::parse_str(&row.id).map_err(|e| corrupt(e.to_string()))?,
            occurred_at: from_db_time(row.occurred_at),
            actor_type: row.actor_type,
            actor_id: row.actor_id,
            action: row.action,
            subject_type: row.subject_type,
            subject_id: row.subject_id,
            request_id: row.request_id,
            details: serde_json::from_str(&row.details).map_err(|e| corrupt(e.to_string()))?,
        })
    }
}
