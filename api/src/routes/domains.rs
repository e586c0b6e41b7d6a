//! Domain ownership: the organisation proves a claimed domain with its DNS TXT record, or a
//! reviewer verifies it by hand with a reason.

use actix_web::http::header::{self, ETag, EntityTag};
use actix_web::{post, web, HttpRequest, HttpResponse};
use gateway_domain::services::Context;
use gateway_domain::{Actor, Organisation, OrganisationId};

use crate::dto::{DomainUnverifyRequest, ManualVerificationRequest, OrganisationResponse};
use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, OrganisationCaller, RequestId, ReviewerCaller};
use crate::routes::registrations::own_organisation;
use crate::routes::reviewer_context;
use crate::state::AppState;

fn respond(org: &Organisation, body: OrganisationResponse) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ETag(EntityTag::new_strong(org.version.0.to_string())))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Verify a claimed domain by its DNS TXT record.
///
/// Publish `TXT "federation-gateway-verification=<token>"` at `_federation-gateway.<domain>`
/// (both shown in the domain's `txt_record` when you read your organisation), then call this.
/// The gateway resolves the record now, through its configured nameservers, and marks the
/// domain `verified` (method `dns`). A missing record (or NXDOMAIN) is refused with rule
/// `txt_record_missing`, another token with `txt_record_mismatch` (422, nothing changed); a
/// domain another organisation has verified (or one it is under) gets 409; when no
/// nameserver answers, 503 (nothing changed: try again later). Verifying a verified domain
/// changes nothing. A name that can never be claimed (reserved, retired, a public suffix) is
/// refused with 422 naming the rule, and so is a domain too long to publish the record under
/// (`txt_record_name_length`). One lookup per claimed domain every `dns.verify_interval_seconds`
/// (10 by default, per gateway process): sooner gets 429 with `Retry-After`.
#[utoipa::path(
    tag = "registration",
    operation_id = "verify_domain",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("domain" = String, Path, description = "A domain the organisation claims", example = "leedscare.org.uk"),
    ),
    responses(
        (status = 200, description = "The registration, with the domain verified", body = OrganisationResponse,
            headers(("ETag" = String, description = "The organisation's new version"))),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token, or it claims no such domain", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another organisation has verified this domain or one it is under, or the registration was rejected", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The TXT record is missing or holds another token, the name can never be claimed, or it is too long to publish the record under", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This domain was looked up moments ago", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until it may be looked up again"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No nameserver answered in time, or the database is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[post("/v1/organisations/{id}/domains/{domain}/verify")]
#[tracing::instrument(name = "verify_domain", skip_all, fields(organisation_id = %path.0, domain = %path.1))]
pub async fn verify(
    req: HttpRequest,
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, domain) = path.into_inner();
    let id = own_organisation(caller, &raw_id)?;
    let ctx = Context {
        actor: Actor::Organisation(caller.0),
        request_id: RequestId::of(&req),
    };
    let services = state.services.clone();
    let org = web::block(move || services.verify_domain_by_dns(&ctx, id, &domain)).await??;
    Ok(respond(&org, OrganisationResponse::for_owner(&org)))
}

/// Verify an organisation's domain by hand (reviewer, a person), with a reason.
///
/// For organisations that cannot publish TXT records. Recorded with method `manual`, the
/// reviewer and the reason, on the audit trail. A domain another organisation has verified
/// (or one it is under) cannot be verified (409).
#[utoipa::path(
    tag = "review",
    operation_id = "review_verify_domain",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("domain" = String, Path, description = "A domain the organisation claims", example = "leedscare.org.uk"),
    ),
    request_body(content = ManualVerificationRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The registration, with the domain verified", body = OrganisationResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the reviewer role and a person, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation, or it claims no such domain", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another organisation has verified this domain or one it is under, or the registration was rejected", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason, or a name that can never be claimed (reserved, retired, a public suffix)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[post("/v1/review/organisations/{id}/domains/{domain}/verify")]
#[tracing::instrument(name = "review_verify_domain", skip_all, fields(organisation_id = %path.0, domain = %path.1))]
pub async fn review_verify(
    req: HttpRequest,
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: JsonBody<ManualVerificationRequest>,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, domain) = path.into_inner();
    let id = OrganisationId::from_uuid(crate::routes::parse_id(&raw_id));
    let (ctx, reviewer) = reviewer_context(&req, caller);
    let services = state.services.clone();
    let org = web::block(move || {
        services.verify_domain_by_hand(&ctx, &reviewer, id, &domain, &body.0.reason)
    })
    .await??;
    Ok(respond(&org, OrganisationResponse::from(&org)))
}

/// Withdraw a domain's verification (approver, a person), with a reason.
///
/// For a name verified by mistake, or held by an organisation that no longer controls it: the
/// claim stays, unverified (same TXT token), so it blocks nobody and the organisation can prove
/// it again; approval needs it verified again. Recorded with the approver and the reason on the
/// audit trail (`domain.unverified`). Withdrawing an
/// unverified claim changes nothing. Agreements in force are not touched: suspend or revoke
/// them separately if need be.
#[utoipa::path(
    tag = "review",
    operation_id = "review_unverify_domain",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("domain" = String, Path, description = "A domain the organisation claims", example = "leedscare.org.uk"),
    ),
    request_body(content = DomainUnverifyRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The registration, with the domain unverified", body = OrganisationResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the approver role and a person, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation, or it claims no such domain", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The registration was rejected", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The verification changed while this request ran: read again", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[post("/v1/review/organisations/{id}/domains/{domain}/unverify")]
#[tracing::instrument(name = "review_unverify_domain", skip_all, fields(organisation_id = %path.0, domain = %path.1))]
pub async fn review_unverify(
    req: HttpRequest,
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: JsonBody<DomainUnverifyRequest>,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, domain) = path.into_inner();
    let id = OrganisationId::from_uuid(crate::routes::parse_id(&raw_id));
    let (ctx, reviewer) = reviewer_context(&req, caller);
    let services = state.services.clone();
    let org = web::block(move || {
        services.unverify_domain_by_hand(&ctx, &reviewer, id, &domain, &body.0.reason)
    })
    .await??;
    Ok(respond(&org, OrganisationResponse::from(&org)))
}
