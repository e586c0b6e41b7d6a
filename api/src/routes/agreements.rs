//! Partner agreements, from the partner's side: templates, drafts, the bytes to sign, the
//! signature, submission; and the grant in force.

use actix_web::http::header::{self, ETag, EntityTag};
use actix_web::{get, post, put, web, HttpRequest, HttpResponse};
use gateway_domain::agreement::{AgreementForm, AgreementId};
use gateway_domain::evidence::EvidenceSet;
use gateway_domain::services::Context;
use gateway_domain::{Actor, Agreement, OrganisationId, Scope};
use uuid::Uuid;

use crate::dto::{
    AgreementListResponse, AgreementRequest, AgreementResponse, AgreementTemplateListResponse,
    AgreementTemplateResponse, GrantResponse, SignatureRequest,
};
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, OptionalIfMatch, OrganisationCaller, PartnerCaller, RequestId};
use crate::routes::registrations::own_organisation;
use crate::state::AppState;

pub(crate) fn agreement_etag(agreement: &Agreement) -> ETag {
    ETag(EntityTag::new_strong(agreement.version.0.to_string()))
}

fn agreement_id(raw: &str) -> Result<AgreementId, ApiError> {
    Uuid::parse_str(raw)
        .map(AgreementId::from_uuid)
        .map_err(|_| ApiError::NotFound)
}

fn organisation_ctx(req: &HttpRequest, organisation: OrganisationId) -> Context {
    Context {
        actor: Actor::Organisation(organisation),
        request_id: RequestId::of(req),
    }
}

/// Renders agreements with their effective state and signature status (one read of the
/// organisation and its evidence for all of them).
fn render(
    state: &AppState,
    organisation: OrganisationId,
    agreements: &[Agreement],
) -> Result<Vec<AgreementResponse>, ApiError> {
    let services = &state.services;
    let org = services.organisation(organisation)?;
    let evidence = services.evidence.list_evidence(organisation)?;
    let now = state.clock.now();
    Ok(agreements
        .iter()
        .map(|a| {
            AgreementResponse::new(
                a,
                a.effective_state(EvidenceSet(&evidence), now),
                services.signature_status(&org, a).as_str(),
            )
            .for_partner()
        })
        .collect())
}

async fn respond(
    state: web::Data<AppState>,
    organisation: OrganisationId,
    agreement: Agreement,
    created: bool,
) -> Result<HttpResponse, ApiError> {
    let etag = agreement_etag(&agreement);
    let id = agreement.id;
    let state2 = state.clone();
    let body = web::block(move || render(&state2, organisation, std::slice::from_ref(&agreement)))
        .await??;
    let mut response = if created {
        let mut r = HttpResponse::Created();
        r.insert_header((
            header::LOCATION,
            format!("/v1/organisations/{organisation}/agreements/{id}"),
        ));
        r
    } else {
        HttpResponse::Ok()
    };
    Ok(response
        .insert_header(etag)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(&body[0]))
}

/// List the published agreement templates.
#[utoipa::path(
    tag = "agreements",
    operation_id = "list_agreement_templates",
    responses((status = 200, description = "The templates", body = AgreementTemplateListResponse)),
    security(())
)]
#[get("/v1/agreement-templates")]
pub async fn templates(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(AgreementTemplateListResponse {
        items: state
            .services
            .templates()
            .iter()
            .map(AgreementTemplateResponse::from)
            .collect(),
    })
}

/// Draft an agreement.
///
/// Names the template, the scopes asked for, the term (at most 3 years) and the signatory.
/// `address_book` needs the organisation's Exchange version to be 2010 or later.
#[utoipa::path(
    tag = "agreements",
    operation_id = "create_agreement",
    params(("id" = Uuid, Path, description = "The organisation id")),
    request_body(content = AgreementRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The draft", body = AgreementResponse,
            headers(("Location" = String, description = "The agreement's URI"), ("ETag" = String, description = "Its version"))),
        (status = 400, description = "Malformed JSON, unknown or missing field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The registration was rejected", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields break the agreement rules", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[post("/v1/organisations/{id}/agreements")]
pub async fn create(
    req: HttpRequest,
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody<AgreementRequest>,
) -> Result<HttpResponse, ApiError> {
    let organisation = own_organisation(caller, &id)?;
    let form = AgreementForm::from(&body.0);
    let ctx = organisation_ctx(&req, organisation);
    let services = state.services.clone();
    let agreement =
        web::block(move || services.draft_agreement(&ctx, organisation, &form)).await??;
    respond(state, organisation, agreement, true).await
}

/// List the organisation's agreements, newest first.
#[utoipa::path(
    tag = "agreements",
    operation_id = "list_agreements",
    params(("id" = Uuid, Path, description = "The organisation id")),
    responses(
        (status = 200, description = "The agreements", body = AgreementListResponse),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[get("/v1/organisations/{id}/agreements")]
pub async fn list(
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let organisation = own_organisation(caller, &id)?;
    let state2 = state.clone();
    let items = web::block(move || {
        let agreements = state2.services.agreements_of(organisation)?;
        render(&state2, organisation, &agreements)
    })
    .await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(AgreementListResponse { items }))
}

/// Read one agreement.
#[utoipa::path(
    tag = "agreements",
    operation_id = "get_agreement",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("aid" = Uuid, Path, description = "The agreement id"),
    ),
    responses(
        (status = 200, description = "The agreement", body = AgreementResponse,
            headers(("ETag" = String, description = "Its version"))),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such agreement visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[get("/v1/organisations/{id}/agreements/{aid}")]
pub async fn get(
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, aid) = path.into_inner();
    let organisation = own_organisation(caller, &id)?;
    let aid = agreement_id(&aid)?;
    let services = state.services.clone();
    let agreement = web::block(move || services.agreement_of(organisation, aid)).await??;
    respond(state, organisation, agreement, false).await
}

/// Replace a draft's content (If-Match). A signature made over the old content is dropped.
#[utoipa::path(
    tag = "agreements",
    operation_id = "update_agreement_draft",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("aid" = Uuid, Path, description = "The agreement id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, e.g. \"2\"",
            pattern = r#"^(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*$"#),
    ),
    request_body(content = AgreementRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed draft", body = AgreementResponse,
            headers(("ETag" = String, description = "Its new version"))),
        (status = 400, description = "Malformed JSON, unknown or missing field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such agreement visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft, or the registration was rejected", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag is stale", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields break the agreement rules", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[put("/v1/organisations/{id}/agreements/{aid}")]
pub async fn update_draft(
    req: HttpRequest,
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    if_match: OptionalIfMatch,
    body: JsonBody<AgreementRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, aid) = path.into_inner();
    let organisation = own_organisation(caller, &id)?;
    let aid = agreement_id(&aid)?;
    let form = AgreementForm::from(&body.0);
    let precondition = if_match.precondition();
    let ctx = organisation_ctx(&req, organisation);
    let services = state.services.clone();
    let agreement = web::block(move || {
        services.change_draft(&ctx, organisation, aid, precondition.as_ref(), &form)
    })
    .await??;
    respond(state, organisation, agreement, false).await
}

/// The exact bytes the signatory signs: RFC 8785 (JCS) canonical JSON of the agreement id,
/// organisation id and ODS code, template version and SHA-256, scopes, term and signatory.
#[utoipa::path(
    tag = "agreements",
    operation_id = "get_signing_payload",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("aid" = Uuid, Path, description = "The agreement id"),
    ),
    responses(
        (status = 200, description = "The canonical payload; sign these bytes as they are", content_type = "application/json", body = Object),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such agreement visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[get("/v1/organisations/{id}/agreements/{aid}/signing-payload")]
pub async fn signing_payload(
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, aid) = path.into_inner();
    let organisation = own_organisation(caller, &id)?;
    let aid = agreement_id(&aid)?;
    let services = state.services.clone();
    let payload = web::block(move || services.signing_payload(organisation, aid)).await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(payload))
}

/// Sign the draft: a detached compact JWS over the signing payload, made with one of the
/// organisation's registered keys. It is verified and stored with the signer's public key.
#[utoipa::path(
    tag = "agreements",
    operation_id = "sign_agreement",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("aid" = Uuid, Path, description = "The agreement id"),
    ),
    request_body(content = SignatureRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The signed draft", body = AgreementResponse,
            headers(("ETag" = String, description = "Its new version"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such agreement visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft, or the registration was rejected", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The signature does not verify, or no key is registered", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[put("/v1/organisations/{id}/agreements/{aid}/signature")]
pub async fn sign(
    req: HttpRequest,
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: JsonBody<SignatureRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, aid) = path.into_inner();
    let organisation = own_organisation(caller, &id)?;
    let aid = agreement_id(&aid)?;
    let ctx = organisation_ctx(&req, organisation);
    let services = state.services.clone();
    let agreement =
        web::block(move || services.sign_agreement(&ctx, organisation, aid, &body.0.jws)).await??;
    respond(state, organisation, agreement, false).await
}

/// Submit a signed draft for review.
#[utoipa::path(
    tag = "agreements",
    operation_id = "submit_agreement",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("aid" = Uuid, Path, description = "The agreement id"),
    ),
    responses(
        (status = 200, description = "Submitted", body = AgreementResponse,
            headers(("ETag" = String, description = "Its new version"))),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such agreement visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft, or the registration was rejected", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not signed, or the signature no longer holds", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[post("/v1/organisations/{id}/agreements/{aid}/submit")]
pub async fn submit(
    req: HttpRequest,
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, aid) = path.into_inner();
    let organisation = own_organisation(caller, &id)?;
    let aid = agreement_id(&aid)?;
    let ctx = organisation_ctx(&req, organisation);
    let services = state.services.clone();
    let agreement =
        web::block(move || services.submit_agreement(&ctx, organisation, aid)).await??;
    respond(state, organisation, agreement, false).await
}

/// The caller's grant in force now (a data-scope token). Checked afresh on every request,
/// as every data endpoint does: a suspension, revocation or lapse answers 403
/// `grant-inactive` at once, also for a token issued a minute earlier.
#[utoipa::path(
    tag = "agreements",
    operation_id = "get_current_grant",
    responses(
        (status = 200, description = "The grant in force", body = GrantResponse),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No data scope in the token, or no agreement in force", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("partner_oauth" = ["address_book:read"]), ("partner_oauth" = ["free_busy:read"]))
)]
#[get("/v1/grants/current")]
pub async fn current_grant(
    caller: PartnerCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let scope = [Scope::AddressBookRead, Scope::FreeBusyRead]
        .into_iter()
        .find(|s| caller.scopes.contains(s))
        .ok_or_else(|| {
            ApiError::Forbidden(
                "this needs a token with address_book:read or free_busy:read".to_owned(),
            )
        })?;
    let grant = caller.granted(&state, scope).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(GrantResponse::from(&grant)))
}
