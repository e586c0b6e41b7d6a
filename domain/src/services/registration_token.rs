//! The registration access token after registration: its holder rotates it (the old one stops
//! working at once), an approver revokes it, and after a revocation an approver issues a fresh
//! one to hand over out of band. Every step is audited; no step ever records the token.

use std::collections::HashMap;

use crate::access::{ReviewerIdentity, Role};
use crate::audit::AuditAction;
use crate::organisation::OrganisationId;
use crate::ports::{CredentialDigest, RepositoryError};
use crate::registration_token::{RegistrationTokenState, RegistrationTokenStatus, TokenIssuer};
use crate::services::{
    require_person, Context, Refusal, RefusalKind, ServiceError, ServiceResult, Services,
};
use crate::text::Reason;
use crate::validation::{FieldError, ValidationErrors};

/// How often a reviewer's change is retried when a rotation slipped in between its read and
/// its write (the rotation does not change what the reviewer decided on).
const ATTEMPTS: usize = 3;

fn reason_of(raw: &str) -> ServiceResult<Reason> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(ValidationErrors(vec![FieldError::new(
            "reason",
            "required",
            "say why (1 to 2000 characters)",
        )])
        .into());
    }
    Reason::parse(raw).map_err(|v| ValidationErrors(vec![v.at("reason")]).into())
}

impl Services {
    /// The registration token's state of each of `ids` that has one.
    pub fn registration_tokens(
        &self,
        ids: &[OrganisationId],
    ) -> ServiceResult<HashMap<OrganisationId, RegistrationTokenStatus>> {
        Ok(self.organisations.registration_tokens(ids)?)
    }

    /// The registration token's state of one organisation.
    pub fn registration_token(&self, id: OrganisationId) -> ServiceResult<RegistrationTokenStatus> {
        self.organisations
            .registration_tokens(&[id])?
            .remove(&id)
            .ok_or(ServiceError::NotFound)
    }

    /// Rotation by the holder of the live token `current_selector` (RFC 7592 style): `next`
    /// replaces it atomically. `NotFound` when that token stopped working meanwhile (another
    /// rotation or a revocation won).
    pub fn rotate_registration_token(
        &self,
        ctx: &Context,
        id: OrganisationId,
        current_selector: &str,
        next: &CredentialDigest,
    ) -> ServiceResult<RegistrationTokenStatus> {
        let at = self.clock.now();
        let event = ctx.event(
            at,
            AuditAction::RegistrationTokenRotated,
            "organisation",
            id.to_string(),
            serde_json::json!({}),
        );
        Ok(self
            .organisations
            .rotate_credential(id, current_selector, next, at, &event)?)
    }

    /// Revocation by an approver (a person), with a reason: no token of the organisation
    /// works any more, anywhere, until an approver issues a fresh one. Answers 403 (role,
    /// person), 404, 409 (already revoked), 422 (reason), in that order.
    pub fn revoke_registration_token(
        &self,
        ctx: &Context,
        reviewer: &ReviewerIdentity,
        id: OrganisationId,
        reason: &str,
    ) -> ServiceResult<RegistrationTokenStatus> {
        require_person(reviewer, Role::Approver)?;
        self.change_token_state(id, |current| {
            if current.state == RegistrationTokenState::Revoked {
                return Err(Refusal::new(
                    RefusalKind::RegistrationTokenState,
                    "the registration token is already revoked",
                )
                .into());
            }
            let reason = reason_of(reason)?;
            let at = self.clock.now();
            let mut next = current.clone();
            next.state = RegistrationTokenState::Revoked;
            next.revoked_at = Some(at);
            next.revoked_by = Some(reviewer.subject.clone());
            next.revocation_reason = Some(reason.clone());
            next.version = current.version.next();
            let event = ctx.event(
                at,
                AuditAction::RegistrationTokenRevoked,
                "organisation",
                id.to_string(),
                serde_json::json!({
                    "reason": reason.as_str(),
                    "reviewer": { "subject": reviewer.subject, "name": reviewer.name, "email": reviewer.email },
                }),
            );
            Ok((next, None, event))
        })
    }

    /// A fresh token after a revocation, issued by an approver (a person) with a reason, to
    /// hand over to the organisation out of band; the organisation should rotate it at once,
    /// so that no copy the approver saw keeps working. Answers 403, 404, 409 (the token is
    /// not revoked: revoke it first), 422 (reason).
    pub fn reissue_registration_token(
        &self,
        ctx: &Context,
        reviewer: &ReviewerIdentity,
        id: OrganisationId,
        reason: &str,
        credential: &CredentialDigest,
    ) -> ServiceResult<RegistrationTokenStatus> {
        require_person(reviewer, Role::Approver)?;
        self.change_token_state(id, |current| {
            if current.state != RegistrationTokenState::Revoked {
                return Err(Refusal::new(
                    RefusalKind::RegistrationTokenState,
                    "the registration token is in force: revoke it before issuing a fresh one",
                )
                .into());
            }
            let reason = reason_of(reason)?;
            let at = self.clock.now();
            let mut next = current.clone();
            next.state = RegistrationTokenState::Active;
            next.issued_at = at;
            next.issued_by = TokenIssuer::Approver(reviewer.subject.clone());
            next.rotated_at = None;
            next.rotations = 0;
            next.version = current.version.next();
            let event = ctx.event(
                at,
                AuditAction::RegistrationTokenIssued,
                "organisation",
                id.to_string(),
                serde_json::json!({
                    "reason": reason.as_str(),
                    "reviewer": { "subject": reviewer.subject, "name": reviewer.name, "email": reviewer.email },
                }),
            );
            Ok((next, Some(credential), event))
        })
    }

    /// Reads the token's state, decides, and writes under the version read; a change that
    /// slipped in between (a rotation) makes it decide again.
    fn change_token_state<'c>(
        &self,
        id: OrganisationId,
        decide: impl Fn(
            &RegistrationTokenStatus,
        ) -> ServiceResult<(
            RegistrationTokenStatus,
            Option<&'c CredentialDigest>,
            crate::audit::NewAuditEvent,
        )>,
    ) -> ServiceResult<RegistrationTokenStatus> {
        self.organisation(id)?;
        let mut attempt = 1;
        loop {
            let current = self.registration_token(id)?;
            let (next, credential, event) = decide(&current)?;
            match self.organisations.replace_token_state(
                id,
                current.version,
                &next,
                credential,
                &event,
            ) {
                Err(RepositoryError::VersionMismatch { .. }) if attempt < ATTEMPTS => attempt += 1,
                other => return Ok(other?),
            }
        }
    }
}
