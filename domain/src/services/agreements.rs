//! The partner's side of an agreement: draft it, change the draft, get the bytes to sign,
//! sign, submit; and what an organisation still lacks.

use crate::agreement::{
    Agreement, AgreementDraft, AgreementForm, AgreementId, AgreementSignature, AgreementState,
    AgreementTemplate, OdsSelection, Scopes,
};
use crate::audit::AuditAction;
use crate::evidence::EvidenceSet;
use crate::keys::{KeyType, PartnerKey};
use crate::organisation::{Organisation, OrganisationId, OrganisationStatus, Version};
use crate::services::{
    Context, Precondition, Refusal, RefusalKind, ServiceError, ServiceResult, Services,
};
use crate::validation::FieldError;

/// Whether an agreement's stored signature still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    Missing,
    /// The JWS verifies over the stored payload with the stored key, and the payload is the
    /// agreement's current canonical content.
    Valid,
    Invalid(String),
}

impl SignatureStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Valid => "valid",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// What an organisation still lacks, as `field`/`rule` pairs a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OnboardingStatus {
    pub missing_for_submission: Vec<FieldError>,
    pub missing_for_approval: Vec<FieldError>,
}

fn selection_json(selection: &OdsSelection) -> serde_json::Value {
    match selection {
        OdsSelection::All => serde_json::json!("all"),
        OdsSelection::Only(codes) => {
            serde_json::json!(codes.iter().map(|c| c.as_str()).collect::<Vec<_>>())
        }
    }
}

/// The agreement's scopes as a JSON document (arrays sorted and without repeats).
pub fn scopes_json(scopes: &Scopes) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let Some(ab) = &scopes.address_book {
        out.insert(
            "address_book".into(),
            serde_json::json!({
                "attributes": ab.attributes.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
                "organisations": selection_json(&ab.organisations),
            }),
        );
    }
    if let Some(fb) = &scopes.free_busy {
        out.insert(
            "free_busy".into(),
            serde_json::json!({
                "detail": fb.detail.as_str(),
                "organisations": selection_json(&fb.organisations),
            }),
        );
    }
    serde_json::Value::Object(out)
}

impl Agreement {
    /// The document whose canonical form is signed: identity, template, scopes, term and
    /// signatory. Nothing that changes after signing (state, version) is in it.
    pub fn signing_document(&self, ods_code: &str) -> serde_json::Value {
        serde_json::json!({
            "agreement_id": self.id.to_string(),
            "organisation_id": self.organisation_id.to_string(),
            "ods_code": ods_code,
            "template": { "version": self.template_version, "sha256": self.template_sha256 },
            "scopes": scopes_json(&self.scopes),
            "term": {
                "starts_on": self.term.starts_on.to_string(),
                "ends_on": self.term.ends_on.to_string(),
            },
            "signatory": {
                "name": self.signatory.name.as_str(),
                "role": self.signatory.role.as_str(),
                "email": self.signatory.email.as_str(),
            },
        })
    }
}

impl Services {
    pub fn templates(&self) -> &[AgreementTemplate] {
        &self.templates
    }

    fn template(&self, version: &str) -> ServiceResult<&AgreementTemplate> {
        self.templates
            .iter()
            .find(|t| t.version == version)
            .ok_or(ServiceError::NotFound)
    }

    fn active_organisation(&self, id: OrganisationId) -> ServiceResult<Organisation> {
        let org = self.organisation(id)?;
        if org.status == OrganisationStatus::Rejected {
            return Err(Refusal::new(
                RefusalKind::OrganisationRejected,
                "this registration was rejected; register again",
            )
            .into());
        }
        Ok(org)
    }

    /// One of the organisation's agreements; another organisation's answers like a missing one.
    pub fn agreement_of(
        &self,
        organisation: OrganisationId,
        id: AgreementId,
    ) -> ServiceResult<Agreement> {
        self.agreements
            .get_agreement(id)?
            .filter(|a| a.organisation_id == organisation)
            .ok_or(ServiceError::NotFound)
    }

    pub fn agreements_of(&self, organisation: OrganisationId) -> ServiceResult<Vec<Agreement>> {
        self.organisation(organisation)?;
        Ok(self.agreements.list_agreements(organisation)?)
    }

    /// Starts a draft.
    pub fn draft_agreement(
        &self,
        ctx: &Context,
        organisation: OrganisationId,
        form: &AgreementForm,
    ) -> ServiceResult<Agreement> {
        let org = self.active_organisation(organisation)?;
        let draft = AgreementDraft::parse(form, &self.templates, org.exchange_version.as_str())?;
        let template = self.template(&draft.template_version)?;
        let now = self.clock.now();
        let agreement = Agreement {
            id: AgreementId::new(),
            organisation_id: organisation,
            template_version: template.version.clone(),
            template_sha256: template.sha256.clone(),
            scopes: draft.scopes,
            term: draft.term,
            signatory: draft.signatory,
            state: AgreementState::Draft,
            state_reason: None,
            suspension: None,
            signature: None,
            check: None,
            limited_details_granted: false,
            version: Version::FIRST,
            created_at: now,
            updated_at: now,
        };
        let event = ctx.event(
            now,
            AuditAction::AgreementDrafted,
            "agreement",
            agreement.id.to_string(),
            serde_json::json!({
                "organisation_id": organisation.to_string(),
                "template": agreement.template_version,
                "scopes": scopes_json(&agreement.scopes),
            }),
        );
        Ok(self.agreements.create_agreement(&agreement, &event)?)
    }

    fn draft_of(
        &self,
        organisation: OrganisationId,
        id: AgreementId,
    ) -> ServiceResult<(Organisation, Agreement)> {
        let org = self.active_organisation(organisation)?;
        let agreement = self.agreement_of(organisation, id)?;
        Ok((org, agreement))
    }

    fn require_draft(agreement: &Agreement) -> ServiceResult<()> {
        if agreement.state == AgreementState::Draft {
            Ok(())
        } else {
            Err(Refusal::new(
                RefusalKind::NotADraft,
                format!(
                    "the agreement is {}; only a draft can be changed, signed or submitted",
                    agreement.state
                ),
            )
            .into())
        }
    }

    /// Replaces a draft's content under `If-Match`; any signature is dropped, since it was
    /// made over the old content.
    pub fn change_draft(
        &self,
        ctx: &Context,
        organisation: OrganisationId,
        id: AgreementId,
        precondition: Option<&Precondition>,
        form: &AgreementForm,
    ) -> ServiceResult<Agreement> {
        let (org, current) = self.draft_of(organisation, id)?;
        Precondition::check(precondition, current.version)?;
        Self::require_draft(&current)?;
        let draft = AgreementDraft::parse(form, &self.templates, org.exchange_version.as_str())?;
        let template = self.template(&draft.template_version)?;
        let now = self.clock.now();
        let mut next = current.clone();
        next.template_version = template.version.clone();
        next.template_sha256 = template.sha256.clone();
        next.scopes = draft.scopes;
        next.term = draft.term;
        next.signatory = draft.signatory;
        if next == current {
            return Ok(current);
        }
        next.signature = None;
        next.version = current.version.next();
        next.updated_at = now;
        let event = ctx.event(
            now,
            AuditAction::AgreementChanged,
            "agreement",
            id.to_string(),
            serde_json::json!({
                "organisation_id": organisation.to_string(),
                "version": next.version.0,
                "signature_dropped": current.signature.is_some(),
            }),
        );
        self.agreements
            .save_agreements(&[(current.version, next.clone())], &[event])?;
        Ok(next)
    }

    /// The canonical bytes (RFC 8785) the signatory signs.
    pub fn signing_payload(
        &self,
        organisation: OrganisationId,
        id: AgreementId,
    ) -> ServiceResult<String> {
        let org = self.organisation(organisation)?;
        let agreement = self.agreement_of(organisation, id)?;
        self.canonical_payload(&org, &agreement)
    }

    fn canonical_payload(
        &self,
        org: &Organisation,
        agreement: &Agreement,
    ) -> ServiceResult<String> {
        self.signatures
            .canonicalise(&agreement.signing_document(org.ods_code.as_str()))
            .map_err(|e| {
                ServiceError::Storage(crate::ports::RepositoryError::Corrupt(format!(
                    "agreement {} cannot be canonicalised: {e}",
                    agreement.id
                )))
            })
    }

    /// Verifies a detached JWS over the draft's current payload with one of the
    /// organisation's registered keys, and stores it with the signer's public key.
    pub fn sign_agreement(
        &self,
        ctx: &Context,
        organisation: OrganisationId,
        id: AgreementId,
        jws: &str,
    ) -> ServiceResult<Agreement> {
        let (org, current) = self.draft_of(organisation, id)?;
        Self::require_draft(&current)?;
        let payload = self.canonical_payload(&org, &current)?;
        let keys = self.keys.list_keys(organisation)?;
        if keys.is_empty() {
            return Err(Refusal {
                kind: RefusalKind::PreconditionsUnmet,
                detail: "register a key (PUT .../jwks) before signing".to_owned(),
                unmet: vec![FieldError::new(
                    "keys",
                    "key_registered",
                    "the organisation has no registered key",
                )],
            }
            .into());
        }
        let verified = self
            .signatures
            .verify_detached(jws.trim(), payload.as_bytes(), &keys)
            .map_err(|why| {
                Refusal::new(
                    RefusalKind::SignatureInvalid,
                    format!("the signature does not verify over this draft's signing payload with the organisation's registered keys: {why}"),
                )
            })?;
        let now = self.clock.now();
        let mut next = current.clone();
        next.signature = Some(AgreementSignature {
            jws: jws.trim().to_owned(),
            kid: verified.kid.clone(),
            alg: verified.alg.clone(),
            jwk: verified.jwk,
            payload,
            signed_at: now,
        });
        next.version = current.version.next();
        next.updated_at = now;
        let event = ctx.event(
            now,
            AuditAction::AgreementSigned,
            "agreement",
            id.to_string(),
            serde_json::json!({
                "organisation_id": organisation.to_string(),
                "kid": verified.kid,
                "alg": verified.alg,
                "signatory": next.signatory.email.as_str(),
                "version": next.version.0,
            }),
        );
        self.agreements
            .save_agreements(&[(current.version, next.clone())], &[event])?;
        Ok(next)
    }

    /// Whether the stored signature still verifies and still covers the current content.
    pub fn signature_status(&self, org: &Organisation, agreement: &Agreement) -> SignatureStatus {
        let Some(signature) = &agreement.signature else {
            return SignatureStatus::Missing;
        };
        match self.canonical_payload(org, agreement) {
            Ok(payload) if payload == signature.payload => {}
            Ok(_) => {
                return SignatureStatus::Invalid(
                    "the agreement changed after it was signed".to_owned(),
                )
            }
            Err(e) => return SignatureStatus::Invalid(e.to_string()),
        }
        let kty = signature
            .jwk
            .get("kty")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let Some(key_type) = KeyType::parse(kty) else {
            return SignatureStatus::Invalid("the stored key has an unknown type".to_owned());
        };
        let key = PartnerKey {
            kid: signature.kid.clone(),
            key_type,
            alg: Some(signature.alg.clone()),
            jwk: signature.jwk.clone(),
            added_at: signature.signed_at,
            last_used_at: None,
        };
        match self.signatures.verify_detached(
            &signature.jws,
            signature.payload.as_bytes(),
            std::slice::from_ref(&key),
        ) {
            Ok(_) => SignatureStatus::Valid,
            Err(why) => SignatureStatus::Invalid(why),
        }
    }

    /// Hands a signed draft to the reviewers.
    pub fn submit_agreement(
        &self,
        ctx: &Context,
        organisation: OrganisationId,
        id: AgreementId,
    ) -> ServiceResult<Agreement> {
        let (org, current) = self.draft_of(organisation, id)?;
        Self::require_draft(&current)?;
        if let status @ (SignatureStatus::Missing | SignatureStatus::Invalid(_)) =
            self.signature_status(&org, &current)
        {
            return Err(Refusal {
                kind: RefusalKind::PreconditionsUnmet,
                detail: "sign the draft before submitting it".to_owned(),
                unmet: vec![FieldError::new(
                    "signature",
                    "signature_valid",
                    match status {
                        SignatureStatus::Invalid(why) => format!("the signature is not valid: {why}"),
                        _ => "the draft is not signed: PUT .../signature with a detached JWS over .../signing-payload".to_owned(),
                    },
                )],
            }
            .into());
        }
        let now = self.clock.now();
        let mut next = current.clone();
        next.state = AgreementState::Submitted;
        next.version = current.version.next();
        next.updated_at = now;
        let event = ctx.event(
            now,
            AuditAction::AgreementSubmitted,
            "agreement",
            id.to_string(),
            serde_json::json!({ "organisation_id": organisation.to_string(), "version": next.version.0 }),
        );
        self.agreements
            .save_agreements(&[(current.version, next.clone())], &[event])?;
        Ok(next)
    }

    /// The organisation's grant in force now, if any: re-read on every data request, so a
    /// suspension, revocation or lapse takes effect at once.
    pub fn current_grant(
        &self,
        organisation: OrganisationId,
    ) -> ServiceResult<Option<crate::agreement::Grant>> {
        // The token endpoint asks this for every token: the common answer ("nothing in
        // force") costs one query.
        let agreements = self.agreements.list_agreements(organisation)?;
        if !agreements.iter().any(|a| {
            matches!(
                a.state,
                AgreementState::Approved | AgreementState::Suspended
            )
        }) {
            return Ok(None);
        }
        let Some(org) = self.organisations.get(organisation)? else {
            return Ok(None);
        };
        if org.status != OrganisationStatus::Active {
            return Ok(None);
        }
        let evidence = self.evidence.list_evidence(organisation)?;
        Ok(crate::agreement::effective_grant(
            &agreements,
            EvidenceSet(&evidence),
            self.clock.now(),
        ))
    }

    /// What the organisation still needs before it can submit, and before approval.
    pub fn onboarding_status(&self, org: &Organisation) -> ServiceResult<OnboardingStatus> {
        let now = self.clock.now();
        let mut status = OnboardingStatus::default();
        if org.status == OrganisationStatus::Rejected {
            let rejected = super::registration_rejected();
            status.missing_for_submission.push(rejected.clone());
            status.missing_for_approval.push(rejected);
            return Ok(status);
        }
        let keys = self.keys.list_keys(org.id)?;
        let agreements = self.agreements.list_agreements(org.id)?;
        let evidence = self.evidence.list_evidence(org.id)?;
        let set = EvidenceSet(&evidence);
        if keys.is_empty() {
            status.missing_for_submission.push(FieldError::new(
                "keys",
                "key_registered",
                "register a public key (PUT /v1/organisations/{id}/jwks) to sign the agreement and get tokens",
            ));
        }
        let open: Vec<&Agreement> = agreements.iter().filter(|a| !a.state.is_final()).collect();
        let draft = open.iter().find(|a| a.state == AgreementState::Draft);
        let submitted = open.iter().find(|a| a.state == AgreementState::Submitted);
        let approved = open
            .iter()
            .any(|a| a.effective_state(set, now) == AgreementState::Approved);
        match (draft, submitted) {
            (None, None) if !approved => status.missing_for_submission.push(FieldError::new(
                "agreements",
                "draft_exists",
                "draft an agreement (POST /v1/organisations/{id}/agreements)",
            )),
            (Some(draft), _) if self.signature_status(org, draft) != SignatureStatus::Valid => {
                status.missing_for_submission.push(FieldError::new(
                    format!("agreements.{}.signature", draft.id),
                    "signature_valid",
                    "sign the draft's signing payload and PUT the detached JWS",
                ))
            }
            _ => {}
        }
        status.missing_for_approval = set.required_gaps(now);
        if !approved {
            let overlaps = self.organisations.claim_overlaps(org)?;
            status
                .missing_for_approval
                .extend(super::review::unmet_claims(org, &overlaps));
        }
        if !approved {
            match submitted {
                None => status.missing_for_approval.push(FieldError::new(
                    "agreements",
                    "submitted",
                    "submit a signed agreement",
                )),
                Some(a) if a.check.is_none() => status.missing_for_approval.push(FieldError::new(
                    format!("agreements.{}.check", a.id),
                    "checked",
                    "a reviewer has not checked the agreement yet",
                )),
                Some(_) => {}
            }
        }
        Ok(status)
    }
}
