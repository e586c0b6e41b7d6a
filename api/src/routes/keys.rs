//! Self-service key management: an organisation replaces and reads its public key set.

use actix_web::http::header;
use actix_web::{get, put, web, HttpRequest, HttpResponse};
use gateway_domain::{Actor, AuditAction, NewAuditEvent, PartnerKey};

use crate::auth::jwk::check_key_set;
use crate::dto::{JwksRequest, PartnerKeyResponse, PartnerKeySetResponse};
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, OrganisationCaller, RegistrationTokenCaller, RequestId};
use crate::routes::registrations::own_organisation;
use crate::state::AppState;

fn view(state: &AppState, keys: &[PartnerKey]) -> PartnerKeySetResponse {
    let now = state.clock.now();
    PartnerKeySetResponse {
        keys: keys
            .iter()
            .map(|key| PartnerKeyResponse {
                kid: key.kid.clone(),
                jwk: key.jwk.clone(),
                added_at: key.added_at,
                last_used_at: key.last_used_at,
                days_until_removal: state.auth.key_lifecycle.days_until_removal(key, now),
            })
            .collect(),
    }
}

/// Replace the organisation's public key set (registration access token only).
///
/// Rotation without downtime: add the new key (keeping the old), start signing with it, then
/// send the set without the old key. Keys sent again unchanged keep their history. Only the
/// registration access token changes keys: an access token (which these very keys obtain)
/// gets 403, so a leaked access token cannot make itself permanent by adding a key.
#[utoipa::path(
    tag = "keys",
    operation_id = "put_organisation_jwks",
    params(("id" = Uuid, Path, description = "The organisation id")),
    request_body(content = JwksRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The stored key set", body = PartnerKeySetResponse),
        (status = 400, description = "Malformed JSON or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid registration access token (a rotated or revoked one included)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token: changing keys needs the registration access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A key breaks a rule (size, type, private material, kid)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []))
)]
#[put("/v1/organisations/{id}/jwks")]
#[tracing::instrument(name = "put_organisation_jwks", skip_all, fields(organisation_id = %id))]
pub async fn put_jwks(
    req: HttpRequest,
    caller: RegistrationTokenCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody<JwksRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = own_organisation(caller.organisation(), &id)?;
    let now = state.clock.now();
    let keys = check_key_set(&body.0.keys, now).map_err(ApiError::Validation)?;
    caller.reconfirm(&state).await?;
    let caller = caller.organisation();
    let event = NewAuditEvent {
        occurred_at: now,
        actor: Actor::Organisation(caller.0),
        action: AuditAction::KeysReplaced,
        subject_type: "organisation",
        subject_id: Some(id.to_string()),
        request_id: RequestId::of(&req),
        details: serde_json::json!({ "kids": keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>() }),
    };
    let repo = state.keys.clone();
    let stored = web::block(move || repo.replace_keys(id, &keys, &event)).await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view(&state, &stored)))
}

/// Read the organisation's key set, with each key's use and removal countdown.
#[utoipa::path(
    tag = "keys",
    operation_id = "get_organisation_jwks",
    params(("id" = Uuid, Path, description = "The organisation id")),
    responses(
        (status = 200, description = "The key set", body = PartnerKeySetResponse),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[get("/v1/organisations/{id}/jwks")]
#[tracing::instrument(name = "get_organisation_jwks", skip_all, fields(organisation_id = %id))]
pub async fn get_jwks(
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = own_organisation(caller, &id)?;
    let repo = state.keys.clone();
    let keys = web::block(move || repo.list_keys(id)).await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view(&state, &keys)))
}
