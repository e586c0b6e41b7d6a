//! Reviewer sign-in (OpenID Connect, authorization code with PKCE) and the first reviewer
//! endpoints: the organisations to review.

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use gateway_domain::audit::{excerpt, EXCERPT_CHARS};
use gateway_domain::{OrganisationId, Role};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::abuse::Limit;
use crate::auth::oidc::OidcError;
use crate::auth::session::{LOGIN_COOKIE, SESSION_COOKIE};
use crate::dto::{
    OrganisationListResponse, OrganisationPage, OrganisationResponse, ReviewerResponse,
};
use crate::error::{ApiError, Problem};
use crate::extract::{cross_site_refusal, session_of, signed_in, RequestId, ReviewerCaller};
use crate::state::AppState;

fn oidc(state: &AppState) -> Result<std::sync::Arc<crate::auth::oidc::Oidc>, ApiError> {
    state.oidc.clone().ok_or(ApiError::NotFound)
}

fn from_oidc(error: OidcError) -> ApiError {
    match error {
        OidcError::Unavailable(why) => ApiError::Unavailable(why.into()),
        OidcError::Rejected(_) => ApiError::Unauthorized("sign-in failed"),
    }
}

/// Start reviewer sign-in: redirects to the identity provider.
#[utoipa::path(
    tag = "reviewers",
    operation_id = "reviewer_login",
    responses(
        (status = 302, description = "To the identity provider (authorization code flow with PKCE, state and nonce)",
            headers(("Location" = String, description = "The provider's authorization URL"))),
        (status = 404, description = "Reviewer sign-in is not configured", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The identity provider cannot be reached", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[get("/auth/login")]
pub async fn login(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let oidc = oidc(&state)?;
    let (url, login) = oidc.begin_login().await.map_err(from_oidc)?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(state.sessions.login_cookie(&login))
        .finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// Must equal the state of the login this browser started.
    pub state: Option<String>,
    /// Set by the provider when sign-in failed.
    pub error: Option<String>,
}

/// Finish reviewer sign-in: the identity provider sends the browser back here.
#[utoipa::path(
    tag = "reviewers",
    operation_id = "reviewer_callback",
    params(CallbackQuery),
    responses(
        (status = 303, description = "Signed in: a server-side session is started and its cookie set; on to /auth/me",
            headers(("Set-Cookie" = String, description = "The session: an opaque id (HttpOnly, SameSite=Lax, Secure, Path=/)"))),
        (status = 401, description = "Sign-in failed (state mismatch, refused code, invalid ID token)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Reviewer sign-in is not configured", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins from this client address (across replicas)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the limit's minute ends"))),
        (status = 503, description = "The identity provider cannot be reached", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[get("/auth/callback")]
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let oidc = oidc(&state)?;
    // Only a browser that started a sign-in here (a sealed login-state cookie whose `state`
    // matches) can attempt one. Anything else is refused with 401 and counts nothing: a page
    // elsewhere embedding /auth/callback must not lock reviewers out of signing in.
    let pending = state.sessions.login_state(&req);
    let (Some(pending), Some(code), Some(returned_state)) =
        (pending, query.code.as_deref(), query.state.as_deref())
    else {
        if let Some(error) = query.error.as_deref() {
            tracing::info!(provider_error = %excerpt(error, EXCERPT_CHARS), "the identity provider ended a sign-in");
        }
        return Err(ApiError::Unauthorized(
            "sign-in failed: start again at /auth/login",
        ));
    };
    if !bool::from(pending.state.as_bytes().ct_eq(returned_state.as_bytes())) {
        return Err(ApiError::Unauthorized("sign-in failed: state mismatch"));
    }
    // Failed attempts are limited per client address (across replicas) and counted, not
    // recorded one by one: the minute's count becomes one aggregated audit record.
    let client_key = state.abuse.trusted_proxies().key_of(&req);
    let abuse = state.abuse.clone();
    web::block(move || abuse.check_failures(Limit::FailedSignIn, client_key))
        .await??
        .map_err(|limited| ApiError::RateLimited {
            retry_after_seconds: limited.retry_after_seconds,
        })?;
    let failed = |reason: &str| {
        // The reason may quote the provider's (or the caller's) text: a short excerpt only.
        let note = serde_json::json!({ "reason": excerpt(reason, EXCERPT_CHARS) }).to_string();
        let abuse = state.abuse.clone();
        async move {
            web::block(move || abuse.record_failure(Limit::FailedSignIn, client_key, &note))
                .await??;
            Ok::<_, ApiError>(())
        }
    };
    let identity = match oidc.complete_login(code, &pending).await {
        Ok(identity) => identity,
        Err(error) => {
            if let OidcError::Rejected(why) = &error {
                failed(why).await?;
            }
            return Err(from_oidc(error));
        }
    };
    // The session (and the sign-in's audit record) is stored before the browser gets its id.
    let session_id = state
        .session_store
        .start(identity, RequestId::of(&req))
        .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/auth/me"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(state.sessions.session_cookie(&session_id))
        .cookie(state.sessions.removal(LOGIN_COOKIE, "/auth"))
        .finish())
}

/// Who is signed in, with their roles.
#[utoipa::path(
    tag = "reviewers",
    operation_id = "reviewer_me",
    responses(
        (status = 200, description = "The reviewer", body = ReviewerResponse),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The identity provider cannot be reached", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/auth/me")]
pub async fn me(caller: ReviewerCaller, req: HttpRequest) -> HttpResponse {
    let mut body = ReviewerResponse::from(&caller.0);
    body.csrf_token = session_of(&req).map(|s| s.csrf_token);
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Sign out: revokes the session on the server, so the cookie stops working everywhere (at
/// every replica, and in any copy of it), and deletes it in this browser.
#[utoipa::path(
    tag = "reviewers",
    operation_id = "reviewer_logout",
    responses(
        (status = 204, description = "Signed out: the session is revoked",
            headers(("Set-Cookie" = String, description = "Deletes the session cookie"))),
        (status = 401, description = "Not signed in (no session, or it has ended)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not from the gateway's own origin, or without the session's X-CSRF-Token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []))
)]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let session = signed_in(&req, &state)
        .await?
        .ok_or(ApiError::Unauthorized("not signed in"))?;
    if let Some(why) = cross_site_refusal(&req, &state, &session.csrf_token) {
        return Err(ApiError::Csrf(why));
    }
    // Revoked already by a racing sign-out: signed out all the same.
    state
        .session_store
        .end(&session, RequestId::of(&req))
        .await?;
    Ok(HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(state.sessions.removal(SESSION_COOKIE, "/"))
        .finish())
}

/// Where reviewers' OpenID provider publishes its configuration (the `openIdConnectUrl` of
/// this document's reviewer security scheme).
#[utoipa::path(
    tag = "reviewers",
    operation_id = "reviewer_openid_configuration",
    responses(
        (status = 302, description = "To the provider's discovery document", headers(("Location" = String, description = "The discovery URL"))),
        (status = 404, description = "Reviewer sign-in is not configured", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[get("/.well-known/reviewer-openid-configuration")]
pub async fn openid_configuration(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let oidc = oidc(&state)?;
    let url = format!(
        "{}/.well-known/openid-configuration",
        oidc.issuer().trim_end_matches('/')
    );
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .finish())
}

/// List registered organisations for review, oldest first.
#[utoipa::path(
    tag = "reviewers",
    operation_id = "review_list_organisations",
    params(OrganisationPage),
    responses(
        (status = 200, description = "A page of organisations", body = OrganisationListResponse),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the reviewer, approver or auditor role", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/v1/review/organisations")]
pub async fn list_organisations(
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    page: web::Query<OrganisationPage>,
) -> Result<HttpResponse, ApiError> {
    caller.require_any(&[Role::Reviewer, Role::Approver, Role::Auditor])?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::Malformed {
            detail: "limit must be 1 to 200".to_owned(),
            errors: Vec::new(),
        });
    }
    let after = page.after.map(OrganisationId::from_uuid);
    let services = state.services.clone();
    let (items, tokens) = web::block(move || {
        let items = services.organisations.list_organisations(after, limit)?;
        let ids: Vec<OrganisationId> = items.iter().map(|o| o.id).collect();
        let tokens = services.registration_tokens(&ids)?;
        Ok::<_, ApiError>((items, tokens))
    })
    .await??;
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|o| o.id.as_uuid()))
        .flatten();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(OrganisationListResponse {
            items: items
                .iter()
                .map(|o| OrganisationResponse::for_reviewers(o, tokens.get(&o.id)))
                .collect(),
            next_after,
        }))
}
