//! The registration access token after registration: rotation by its holder (RFC 7592
//! style), revocation by an approver, and a fresh token from an approver after a revocation.

use actix_web::http::header;
use actix_web::{post, web, HttpRequest, HttpResponse};
use gateway_domain::services::Context;
use gateway_domain::{Actor, OrganisationId};
use secrecy::ExposeSecret;

use crate::credentials;
use crate::dto::{
    IssuedRegistrationTokenResponse, RegistrationTokenActionRequest, RegistrationTokenResponse,
};
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, RegistrationTokenCaller, RequestId, ReviewerCaller};
use crate::routes::registrations::own_organisation;
use crate::routes::{parse_id, reviewer_context};
use crate::state::AppState;

fn issued(
    state: &AppState,
    id: OrganisationId,
    minted: &credentials::MintedToken,
    status: &gateway_domain::registration_token::RegistrationTokenStatus,
) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(IssuedRegistrationTokenResponse {
            registration_access_token: minted.token.expose_secret().to_owned(),
            registration_client_uri: format!("{}/v1/organisations/{id}", state.public_base_url),
            registration_token: RegistrationTokenResponse::from(status),
        })
}

/// Rotate the registration access token.
///
/// Send the current registration access token; the answer carries a new one, shown only this
/// once, and the old one stops working at once, everywhere. Of two rotations with the same
/// token, exactly one succeeds; the other gets 401, since its token no longer works. Access
/// tokens cannot rotate (403). Audited as `registration_token.rotated`.
#[utoipa::path(
    tag = "registration",
    operation_id = "rotate_registration_token",
    params(("id" = Uuid, Path, description = "The organisation id")),
    responses(
        (status = 200, description = "The new token (shown once) and the token's state", body = IssuedRegistrationTokenResponse),
        (status = 401, description = "No valid registration access token (rotated, revoked, or a concurrent rotation won)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token: rotation needs the registration access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []))
)]
#[post("/v1/organisations/{id}/registration-token")]
#[tracing::instrument(name = "rotate_registration_token", skip_all, fields(organisation_id = %id))]
pub async fn rotate(
    req: HttpRequest,
    caller: RegistrationTokenCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = own_organisation(caller.organisation(), &id)?;
    let minted = credentials::mint();
    let ctx = Context {
        actor: Actor::Organisation(id),
        request_id: RequestId::of(&req),
    };
    let services = state.services.clone();
    let digest = minted.digest.clone();
    let selector = caller.selector.clone();
    let status =
        web::block(move || services.rotate_registration_token(&ctx, id, &selector, &digest))
            .await?
            .map_err(|error| match error {
                // The presented token stopped working between authentication and the swap.
                gateway_domain::services::ServiceError::NotFound => {
                    ApiError::Unauthorized("invalid bearer token")
                }
                other => other.into(),
            })?;
    tracing::info!(organisation_id = %id, "registration token rotated");
    Ok(issued(&state, id, &minted, &status))
}

/// Revoke an organisation's registration access token (approver, a person).
///
/// Needs a reason. The token stops working at once on every endpoint (reading, changing the
/// registration, keys, evidence, agreements, rotation). Access tokens obtained with the
/// organisation's keys are not affected: suspend the agreement as well when the keys may be
/// compromised. Recovery: an approver issues a fresh token (`POST
/// .../registration-token`) and hands it over out of band. Audited as
/// `registration_token.revoked`. Answers in this order: 401, 403, 404, 409, 422.
#[utoipa::path(
    tag = "review",
    operation_id = "review_revoke_registration_token",
    params(("id" = Uuid, Path, description = "The organisation id")),
    request_body(content = RegistrationTokenActionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The token's state: revoked", body = RegistrationTokenResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the approver role and a person, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[post("/v1/review/organisations/{id}/registration-token/revoke")]
pub async fn revoke(
    req: HttpRequest,
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody<RegistrationTokenActionRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = OrganisationId::from_uuid(parse_id(&id));
    let (ctx, reviewer) = reviewer_context(&req, caller);
    let services = state.services.clone();
    let status =
        web::block(move || services.revoke_registration_token(&ctx, &reviewer, id, &body.0.reason))
            .await??;
    tracing::info!(organisation_id = %id, "registration token revoked");
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(RegistrationTokenResponse::from(&status)))
}

/// Issue a fresh registration access token after a revocation (approver, a person).
///
/// Needs a reason, and the token revoked first (409 otherwise). The answer carries the new
/// token, shown only this once, to hand to the organisation's technical contact out of band
/// (by phone, or a channel other than the one that leaked). The organisation should rotate it
/// at once, so that no copy seen on the way keeps working; reviewers see whether it has
/// (`rotations`). Audited as `registration_token.issued`. Answers in this order: 401, 403,
/// 404, 409, 422.
#[utoipa::path(
    tag = "review",
    operation_id = "review_issue_registration_token",
    params(("id" = Uuid, Path, description = "The organisation id")),
    request_body(content = RegistrationTokenActionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new token (shown once) and the token's state", body = IssuedRegistrationTokenResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the approver role and a person, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The token is in force: revoke it first", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[post("/v1/review/organisations/{id}/registration-token")]
pub async fn reissue(
    req: HttpRequest,
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody<RegistrationTokenActionRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = OrganisationId::from_uuid(parse_id(&id));
    let (ctx, reviewer) = reviewer_context(&req, caller);
    let minted = credentials::mint();
    let services = state.services.clone();
    let digest = minted.digest.clone();
    let status = web::block(move || {
        services.reissue_registration_token(&ctx, &reviewer, id, &body.0.reason, &digest)
    })
    .await??;
    tracing::info!(organisation_id = %id, "registration token issued by an approver");
    Ok(issued(&state, id, &minted, &status))
}
