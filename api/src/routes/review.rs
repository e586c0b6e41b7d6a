//! The review workflow: the queue, one agreement with its history, lifecycle transitions and
//! rejecting a registration.

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use gateway_domain::agreement::{AgreementId, AgreementState};
use gateway_domain::services::review::{ReviewItem, TransitionRequest};
use gateway_domain::{OrganisationId, Role};

use crate::dto::{
    AgreementResponse, AuditEventResponse, EvidenceResponse, OrganisationResponse,
    RejectRegistrationRequest, ReviewAgreementResponse, ReviewQueueQuery, ReviewQueueResponse,
    TransitionRequestDto,
};
use crate::error::{field_problems, ApiError, Problem};
use crate::extract::{JsonBody, OptionalIfMatch, ReviewerCaller};
use crate::routes::agreements::agreement_etag;
use crate::routes::{parse_id, reviewer_context};
use crate::state::AppState;

fn render(item: &ReviewItem, now: chrono::DateTime<chrono::Utc>) -> ReviewAgreementResponse {
    ReviewAgreementResponse {
        agreement: AgreementResponse::new(
            &item.agreement,
            item.effective_state,
            item.signature.as_str(),
        ),
        organisation: OrganisationResponse::for_reviewers(
            &item.organisation,
            item.registration_token.as_ref(),
        ),
        evidence: item
            .evidence
            .iter()
            .map(|e| EvidenceResponse::new(e, now))
            .collect(),
        warnings: item.warnings.clone(),
        unmet_for_approval: field_problems(&item.unmet_for_approval),
        history: None,
    }
}

/// The review queue: agreements (submitted by default), oldest first, each with its
/// organisation, evidence, signature status, warnings and unmet approval preconditions.
#[utoipa::path(
    tag = "review",
    operation_id = "review_list_agreements",
    params(ReviewQueueQuery),
    responses(
        (status = 200, description = "A page of the queue", body = ReviewQueueResponse),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the reviewer, approver or auditor role", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/v1/review/agreements")]
pub async fn queue(
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    query: web::Query<ReviewQueueQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_any(&[Role::Reviewer, Role::Approver, Role::Auditor])?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::Malformed {
            detail: "limit must be 1 to 200".to_owned(),
            errors: Vec::new(),
        });
    }
    let wanted = query
        .state
        .map_or(AgreementState::Submitted, |s| s.domain());
    let after = query.after.map(AgreementId::from_uuid);
    let services = state.services.clone();
    let items = web::block(move || services.review_queue(Some(wanted), after, limit)).await??;
    let now = state.clock.now();
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i.agreement.id.as_uuid()))
        .flatten();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ReviewQueueResponse {
            items: items.iter().map(|i| render(i, now)).collect(),
            next_after,
        }))
}

/// One agreement for review, with its history from the audit trail.
#[utoipa::path(
    tag = "review",
    operation_id = "review_get_agreement",
    params(("aid" = Uuid, Path, description = "The agreement id")),
    responses(
        (status = 200, description = "The agreement", body = ReviewAgreementResponse,
            headers(("ETag" = String, description = "Its version, for If-Match on transitions"))),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the reviewer, approver or auditor role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such agreement", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/v1/review/agreements/{aid}")]
pub async fn get_agreement(
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    aid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_any(&[Role::Reviewer, Role::Approver, Role::Auditor])?;
    let aid = AgreementId::from_uuid(parse_id(&aid));
    let services = state.services.clone();
    let (item, history) = web::block(move || {
        let item = services.review_agreement(aid)?;
        let history = services
            .audit
            .events_about("agreement", &aid.to_string(), 500)?;
        Ok::<_, ApiError>((item, history))
    })
    .await??;
    let mut body = render(&item, state.clock.now());
    body.history = Some(history.into_iter().map(AuditEventResponse::from).collect());
    Ok(HttpResponse::Ok()
        .insert_header(agreement_etag(&item.agreement))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// Take one step of the review lifecycle (If-Match).
///
/// `check` needs the reviewer role; the other actions the approver role. State changes need a
/// person: a signed-in session (with its CSRF token) or a token from the provider's
/// authorization-code flow, never an automation token. Approval needs a prior `check` by a
/// different person on this very version and evidence, the required evidence (DSPT
/// assessment, ICO registration) accepted and unexpired, and a valid signature;
/// `limited_details` is granted only with `grant_limited_details: true`. Reject, suspend and
/// revoke need a reason. Answers in this order: 401, 403, 404, 428, 412, 409, 422 (every
/// unmet precondition listed).
#[utoipa::path(
    tag = "review",
    operation_id = "transition_agreement",
    params(
        ("aid" = Uuid, Path, description = "The agreement id"),
        ("If-Match" = String, Header, description = "The agreement's ETag from your last read",
            pattern = r#"^(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*$"#),
    ),
    request_body(content = TransitionRequestDto, content_type = "application/json"),
    responses(
        (status = 200, description = "The agreement after the step", body = AgreementResponse,
            headers(("ETag" = String, description = "Its new version"))),
        (status = 400, description = "Malformed JSON or unknown action", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role missing, an automation token, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such agreement", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed from the agreement's current state", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag is stale: someone acted first", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Preconditions unmet (all listed)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[post("/v1/agreements/{aid}/transitions")]
pub async fn transition(
    req: HttpRequest,
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    aid: web::Path<String>,
    if_match: OptionalIfMatch,
    body: JsonBody<TransitionRequestDto>,
) -> Result<HttpResponse, ApiError> {
    let aid = AgreementId::from_uuid(parse_id(&aid));
    let (ctx, reviewer) = reviewer_context(&req, caller);
    let precondition = if_match.precondition();
    let request = TransitionRequest {
        action: body.0.action.domain(),
        reason: body.0.reason.clone(),
        grant_limited_details: body.0.grant_limited_details.unwrap_or(false),
    };
    let state2 = state.clone();
    let (agreement, effective, signature) = web::block(move || {
        let services = &state2.services;
        let agreement =
            services.transition(&ctx, &reviewer, aid, precondition.as_ref(), &request)?;
        let item = services.review_agreement(agreement.id)?;
        Ok::<_, ApiError>((agreement, item.effective_state, item.signature))
    })
    .await??;
    Ok(HttpResponse::Ok()
        .insert_header(agreement_etag(&agreement))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(AgreementResponse::new(
            &agreement,
            effective,
            signature.as_str(),
        )))
}

/// Reject a registration that never had an approved agreement (approver, a person). Its ODS
/// code and domains stop counting, so the rightful organisation can register them.
#[utoipa::path(
    tag = "review",
    operation_id = "review_reject_registration",
    params(("id" = Uuid, Path, description = "The organisation id")),
    request_body(content = RejectRegistrationRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The rejected registration", body = OrganisationResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the approver role and a person, or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already rejected, or it has had an approved agreement", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[post("/v1/review/organisations/{id}/reject")]
pub async fn reject_registration(
    req: HttpRequest,
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody<RejectRegistrationRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = OrganisationId::from_uuid(parse_id(&id));
    let (ctx, reviewer) = reviewer_context(&req, caller);
    let services = state.services.clone();
    let org = web::block(move || services.reject_registration(&ctx, &reviewer, id, &body.0.reason))
        .await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(OrganisationResponse::from(&org)))
}
