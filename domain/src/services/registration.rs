//! Registering an organisation, changing its registration, and reviewers rejecting it.

use crate::access::{ReviewerIdentity, Role};
use crate::agreement::AgreementState;
use crate::audit::AuditAction;
use crate::organisation::{
    ChangeForm, NewOrganisation, Organisation, OrganisationChange, OrganisationId,
    OrganisationStatus, RegistrationForm,
};
use crate::ports::CredentialDigest;
use crate::services::{
    require_person, Context, Precondition, Refusal, RefusalKind, ServiceError, ServiceResult,
    Services,
};
use crate::text::Reason;
use crate::validation::ValidationErrors;

/// Adds the public-suffix refusals (which need the suffix list port) to the other rules'
/// refusals, so that every broken rule is reported at once.
fn with_suffix_rule<T>(
    parsed: Result<T, ValidationErrors>,
    suffixes: Vec<crate::validation::FieldError>,
) -> Result<T, ValidationErrors> {
    match parsed {
        Ok(value) if suffixes.is_empty() => Ok(value),
        Ok(_) => Err(ValidationErrors(suffixes)),
        Err(mut errors) => {
            errors.0.extend(suffixes);
            Err(errors)
        }
    }
}

impl Services {
    /// Registers a new organisation with its (already minted) registration credential.
    pub fn register(
        &self,
        ctx: &Context,
        form: &RegistrationForm,
        credential: &CredentialDigest,
        client_ip: Option<String>,
    ) -> ServiceResult<Organisation> {
        let new = with_suffix_rule(
            NewOrganisation::parse(form),
            self.public_suffix_violations(&form.domains),
        )?;
        let id = OrganisationId::new();
        let at = self.clock.now();
        let event = ctx.event(
            at,
            AuditAction::OrganisationRegistered,
            "organisation",
            id.to_string(),
            serde_json::json!({
                "ods_code": new.ods_code.as_str(),
                "name": new.name.as_str(),
                "domains": new.domains.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                "client_ip": client_ip,
            }),
        );
        Ok(self
            .organisations
            .create(id, &new, credential, at, &event)?)
    }

    /// The organisation, if it exists.
    pub fn organisation(&self, id: OrganisationId) -> ServiceResult<Organisation> {
        self.organisations.get(id)?.ok_or(ServiceError::NotFound)
    }

    /// Applies a merge patch under `If-Match`. A change that changes nothing writes nothing.
    pub fn change_registration(
        &self,
        ctx: &Context,
        id: OrganisationId,
        precondition: Option<&Precondition>,
        form: &ChangeForm,
    ) -> ServiceResult<Organisation> {
        let change = with_suffix_rule(
            OrganisationChange::parse(form),
            form.domains
                .as_deref()
                .map(|raw| self.public_suffix_violations(raw))
                .unwrap_or_default(),
        )?;
        let current = self.organisation(id)?;
        Precondition::check(precondition, current.version)?;
        let (next, changed) = change.apply(&current, self.clock.now());
        if changed.is_empty() {
            return Ok(current);
        }
        let event = ctx.event(
            next.updated_at,
            AuditAction::OrganisationUpdated,
            "organisation",
            id.to_string(),
            serde_json::json!({ "changed": changed, "version": next.version.0 }),
        );
        Ok(self.organisations.update(current.version, &next, &event)?)
    }

    /// Rejects a registration that never had an approved agreement: its ODS code and domains
    /// stop counting, so the rightful organisation can register them.
    pub fn reject_registration(
        &self,
        ctx: &Context,
        reviewer: &ReviewerIdentity,
        id: OrganisationId,
        reason: &str,
    ) -> ServiceResult<Organisation> {
        require_person(reviewer, Role::Approver)?;
        let current = self.organisation(id)?;
        let reason = Reason::parse(reason).map_err(|v| ValidationErrors(vec![v.at("reason")]))?;
        if current.status == OrganisationStatus::Rejected {
            return Err(Refusal::new(
                RefusalKind::OrganisationRejected,
                "this registration is already rejected",
            )
            .into());
        }
        let ever_approved = self.agreements.list_agreements(id)?.iter().any(|a| {
            matches!(
                a.state,
                AgreementState::Approved
                    | AgreementState::Suspended
                    | AgreementState::Revoked
                    | AgreementState::Expired
            )
        });
        if ever_approved {
            return Err(Refusal::new(
                RefusalKind::RegistrationNotRejectable,
                "this organisation has had an approved agreement: revoke the agreement instead",
            )
            .into());
        }
        let at = self.clock.now();
        let mut next = current.clone();
        next.status = OrganisationStatus::Rejected;
        next.status_reason = Some(reason.clone());
        next.version = current.version.next();
        next.updated_at = at;
        let event = ctx.event(
            at,
            AuditAction::OrganisationRejected,
            "organisation",
            id.to_string(),
            serde_json::json!({ "reason": reason.as_str(), "version": next.version.0 }),
        );
        Ok(self.organisations.update(current.version, &next, &event)?)
    }
}
