//! Registration of external organisations, and reading and changing a registration with its
//! registration access token.

use actix_web::http::header::{self, ETag, EntityTag};
use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use gateway_domain::organisation::{ChangeForm, RegistrationForm};
use gateway_domain::services::Context;
use gateway_domain::{Actor, Organisation, OrganisationId};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::credentials;
use crate::dto::{
    OnboardingDto, OrganisationPatch, OrganisationResponse, RegistrationRequest,
    RegistrationResponse,
};
use crate::error::{ApiError, Problem};
use crate::extract::{
    IfMatch, JsonBody, OptionalIfMatch, OrganisationCaller, RegistrationTokenCaller, RequestId,
};
use crate::state::AppState;

fn organisation_path(id: OrganisationId) -> String {
    format!("/v1/organisations/{id}")
}

fn etag(org: &Organisation) -> ETag {
    ETag(EntityTag::new_strong(org.version.0.to_string()))
}

/// The path id, if it names the caller's organisation; otherwise 404 (never 403), so callers
/// cannot learn which other organisations exist.
pub(crate) fn own_organisation(
    caller: OrganisationCaller,
    raw_id: &str,
) -> Result<OrganisationId, ApiError> {
    let id = Uuid::parse_str(raw_id)
        .map(OrganisationId::from_uuid)
        .map_err(|_| ApiError::NotFound)?;
    if id == caller.0 {
        Ok(id)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Registration is public: limit it per client address, in this process and (per minute)
/// across every replica, before anything is written.
async fn check_rate_limit(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let key = state.abuse.trusted_proxies().key_of(req);
    let abuse = state.abuse.clone();
    web::block(move || abuse.check_registration(key))
        .await??
        .map_err(|limited| ApiError::RateLimited {
            retry_after_seconds: limited.retry_after_seconds,
        })
}

/// Register an organisation.
///
/// Creates the organisation and answers with a one-time `registration_access_token` for
/// reading and changing the registration. Every rule broken is reported at once, naming the
/// field; a refused registration stores nothing.
#[utoipa::path(
    tag = "registration",
    operation_id = "register_organisation",
    request_body(content = RegistrationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = RegistrationResponse,
            headers(
                ("Location" = String, description = "The organisation's URI"),
                ("ETag" = String, description = "The organisation's version, for If-Match"),
            )),
        (status = 400, description = "Malformed JSON, unknown or missing field", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another organisation holds the ODS code (approved agreement) or has verified a domain or a domain it is under", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields break registration rules", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many registrations from this address", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[post("/v1/registrations")]
#[tracing::instrument(name = "register_organisation", skip_all)]
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonBody<RegistrationRequest>,
) -> Result<HttpResponse, ApiError> {
    check_rate_limit(&state, &req).await?;
    let form = RegistrationForm::from(&body.0);
    let minted = credentials::mint();
    let ctx = Context {
        actor: Actor::Anonymous,
        request_id: RequestId::of(&req),
    };
    let client_ip = Some(state.abuse.trusted_proxies().address_of(&req).to_string());
    let services = state.services.clone();
    let digest = minted.digest.clone();
    let org = web::block(move || services.register(&ctx, &form, &digest, client_ip)).await??;
    tracing::info!(organisation_id = %org.id, ods_code = %org.ods_code, "organisation registered");
    let path = organisation_path(org.id);
    let body = RegistrationResponse {
        organisation: OrganisationResponse::for_owner(&org),
        registration_access_token: minted.token.expose_secret().to_owned(),
        registration_client_uri: format!("{}{path}", state.public_base_url),
    };
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, path))
        .insert_header(etag(&org))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// Read an organisation's registration.
#[utoipa::path(
    tag = "registration",
    operation_id = "get_organisation",
    params(("id" = Uuid, Path, description = "The organisation id")),
    responses(
        (status = 200, description = "The registration", body = OrganisationResponse,
            headers(("ETag" = String, description = "The organisation's version, for If-Match"))),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[get("/v1/organisations/{id}")]
#[tracing::instrument(name = "get_organisation", skip_all, fields(organisation_id = %id))]
pub async fn get_organisation(
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = own_organisation(caller, &id)?;
    let services = state.services.clone();
    let (org, onboarding) = web::block(move || {
        let org = services.organisation(id)?;
        let onboarding = services.onboarding_status(&org)?;
        Ok::<_, ApiError>((org, onboarding))
    })
    .await??;
    let mut body = OrganisationResponse::for_owner(&org);
    body.onboarding = Some(OnboardingDto::from(&onboarding));
    Ok(HttpResponse::Ok()
        .insert_header(etag(&org))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// Change an organisation's registration (JSON merge patch).
///
/// Needs `If-Match` with the ETag of your last read: a stale ETag gets 412 and changes
/// nothing, so concurrent edits cannot overwrite each other.
#[utoipa::path(
    tag = "registration",
    operation_id = "update_organisation",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, e.g. \"3\". `*` is refused: it would allow lost updates.",
            pattern = r#"^(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*$"#),
    ),
    request_body(content = OrganisationPatch, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The changed registration", body = OrganisationResponse,
            headers(("ETag" = String, description = "The new version"))),
        (status = 400, description = "Malformed JSON, unknown field or null", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid registration access token (or it was rotated or revoked while the request was being sent)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token: contacts and domains change only with the registration access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A new domain is equal to or under a domain another organisation has verified", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag is stale", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields break registration rules", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []))
)]
#[patch("/v1/organisations/{id}")]
#[tracing::instrument(name = "update_organisation", skip_all, fields(organisation_id = %id))]
pub async fn update_organisation(
    req: HttpRequest,
    caller: RegistrationTokenCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    if_match: IfMatch,
    body: JsonBody<OrganisationPatch>,
) -> Result<HttpResponse, ApiError> {
    let id = own_organisation(caller.organisation(), &id)?;
    caller.reconfirm(&state).await?;
    let caller = caller.organisation();
    let form = ChangeForm::from(&body.0);
    let precondition = OptionalIfMatch(Some(if_match)).precondition();
    let ctx = Context {
        actor: Actor::Organisation(caller.0),
        request_id: RequestId::of(&req),
    };
    let services = state.services.clone();
    let org =
        web::block(move || services.change_registration(&ctx, id, precondition.as_ref(), &form))
            .await??;
    Ok(HttpResponse::Ok()
        .insert_header(etag(&org))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(OrganisationResponse::for_owner(&org)))
}
