//! The token endpoint (client credentials with private_key_jwt, RFC 7523), the gateway's
//! published keys, and its authorization-server metadata (RFC 8414).

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpMessage, HttpRequest, HttpResponse};
use gateway_domain::{Actor, AuditAction, Issuance, NewAuditEvent, OrganisationId, Scope};

use chrono::{DateTime, Utc};

use gateway_domain::audit::{excerpt, EXCERPT_CHARS};

use crate::abuse::{Limit, Limited};
use crate::auth::assertion::{self, Rejection, VerifiedAssertion, ASSERTION_TYPE};
use crate::client_address::ClientKey;
use crate::dto::{
    AuthorizationServerMetadata, JwksResponse, OAuthErrorResponse, TokenRequest, TokenResponse,
};
use crate::error::ApiError;
use crate::extract::RequestId;
use crate::state::AppState;

fn oauth_error(rejection: &Rejection) -> HttpResponse {
    let status = match rejection {
        Rejection::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((
            header::WWW_AUTHENTICATE,
            r#"Bearer realm="federation-gateway", error="invalid_client""#,
        ));
    }
    response.json(OAuthErrorResponse {
        error: rejection.code().to_owned(),
        // Descriptions may quote the caller's input: never echo more than a short excerpt.
        error_description: excerpt(rejection.description(), MAX_DESCRIPTION_CHARS),
    })
}

/// 429: too many failed attempts from this address (or in this client's name).
fn too_many(limited: Limited) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::RETRY_AFTER, limited.retry_after_seconds.to_string()))
        .json(OAuthErrorResponse {
            error: "temporarily_unavailable".to_owned(),
            error_description: format!(
                "too many failed token requests; retry after {} seconds",
                limited.retry_after_seconds
            ),
        })
}

/// The longest `error_description` sent.
const MAX_DESCRIPTION_CHARS: usize = 256;

/// Parses the form body: each parameter at most once (RFC 6749 section 3.2).
/// The form body, read within the body limit and deadline; either broken is an OAuth
/// `invalid_request` (in RFC 6749's JSON form, as every answer of this endpoint), never a
/// bare text error.
async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, Rejection> {
    use futures_util::StreamExt;
    let limit = req
        .app_data::<crate::extract::JsonLimit>()
        .map_or(64 * 1024, |l| l.0);
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            Rejection::InvalidRequest(if crate::body_deadline::is_deadline(&error) {
                "the form body did not arrive in time".to_owned()
            } else {
                "the form body could not be read".to_owned()
            })
        })?;
        if body.len() + chunk.len() > limit {
            return Err(Rejection::InvalidRequest(format!(
                "the form body may be at most {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn form(req: &HttpRequest, body: &[u8]) -> Result<HashMap<String, String>, Rejection> {
    let is_form = req
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|m| m.essence_str() == "application/x-www-form-urlencoded");
    if !is_form {
        return Err(Rejection::InvalidRequest(
            "send the parameters as application/x-www-form-urlencoded".to_owned(),
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| Rejection::InvalidRequest("the form body cannot be parsed".to_owned()))?;
    let mut params = HashMap::new();
    for (name, value) in pairs {
        if params.insert(name.clone(), value).is_some() {
            return Err(Rejection::InvalidRequest(format!(
                "parameter {} is repeated",
                excerpt(&name, EXCERPT_CHARS)
            )));
        }
    }
    Ok(params)
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Rejection> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Rejection::InvalidRequest(format!("{name} is required")))
}

/// Why a token request did not succeed: the client's fault, or ours.
enum Failure {
    Refused(Rejection),
    Storage(gateway_domain::RepositoryError),
}

impl From<Rejection> for Failure {
    fn from(rejection: Rejection) -> Self {
        Self::Refused(rejection)
    }
}

impl From<gateway_domain::RepositoryError> for Failure {
    fn from(error: gateway_domain::RepositoryError) -> Self {
        Self::Storage(error)
    }
}

/// A client authenticated by its assertion, with the scopes it gets.
struct Authenticated {
    assertion: VerifiedAssertion,
    scopes: Vec<Scope>,
    /// The organisation whose key signed (`None` for the publisher).
    organisation: Option<OrganisationId>,
}

/// Checks the request and the assertion and works out the scopes; writes nothing.
fn authenticate(
    state: &AppState,
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Authenticated, Failure> {
    let grant = required(params, "grant_type")?;
    if grant != "client_credentials" {
        return Err(Rejection::UnsupportedGrantType(format!(
            "grant_type {} is not supported: use client_credentials",
            excerpt(grant, EXCERPT_CHARS)
        ))
        .into());
    }
    if required(params, "client_assertion_type")? != ASSERTION_TYPE {
        return Err(Rejection::InvalidClient(format!(
            "client_assertion_type must be {ASSERTION_TYPE}"
        ))
        .into());
    }
    let jwt = required(params, "client_assertion")?;
    let publisher = |client: &str| state.publisher.as_ref().filter(|p| p.client_id == client);
    let mut lookup_error = None;
    let verified = assertion::verify(jwt, &state.auth.assertion, now, |client| {
        if let Some(publisher) = publisher(client) {
            return Ok(publisher.keys.clone());
        }
        let Ok(id) = uuid::Uuid::parse_str(client) else {
            return Ok(Vec::new());
        };
        state
            .keys
            .list_keys(OrganisationId::from_uuid(id))
            .map_err(|e| {
                lookup_error = Some(e);
                Rejection::InvalidClient("keys could not be checked".to_owned())
            })
    });
    if let Some(error) = lookup_error {
        // Storage failed: not the client's fault.
        return Err(Failure::Storage(error));
    }
    let verified = verified?;
    let (allowed, organisation) = match publisher(&verified.client) {
        Some(_) => (vec![Scope::DirectoryWrite, Scope::CalendarWrite], None),
        // Data scopes come only from the agreement in force now.
        None => {
            let organisation = uuid::Uuid::parse_str(&verified.client)
                .ok()
                .map(OrganisationId::from_uuid);
            let mut allowed = vec![Scope::OrganisationManage];
            if let Some(id) = organisation {
                match state.services.current_grant(id) {
                    Ok(grant) => allowed.extend(grant.iter().flat_map(|g| g.scopes())),
                    Err(gateway_domain::services::ServiceError::Storage(error)) => {
                        return Err(Failure::Storage(error))
                    }
                    Err(_) => {}
                }
            }
            allowed.sort();
            (allowed, organisation)
        }
    };
    let scopes = match params.get("scope") {
        None => allowed,
        Some(raw) => {
            let asked = Scope::parse_list(raw).map_err(|unknown| {
                Rejection::InvalidScope(format!(
                    "unknown scope(s): {}",
                    excerpt(&unknown.join(" "), EXCERPT_CHARS)
                ))
            })?;
            if let Some(extra) = asked.iter().find(|s| !allowed.contains(s)) {
                return Err(Rejection::InvalidScope(format!(
                    "scope {extra} is not granted to this client"
                ))
                .into());
            }
            if asked.is_empty() {
                allowed
            } else {
                asked
            }
        }
    };
    Ok(Authenticated {
        assertion: verified,
        scopes,
        organisation,
    })
}

/// What a token request gets.
enum Decision {
    Token(TokenResponse),
    Refused(Rejection),
    Limited(Limited),
}

/// What the blocking part of a token request decided: an answer, or a signed token to send
/// once its issuance (jti, key use, audit record) has committed.
enum Prepared {
    Answer(Decision),
    Issue(TokenResponse, Box<Issuance>),
}

/// Where a request comes from, for limiting failures.
#[derive(Clone, Copy)]
struct Source {
    client_key: ClientKey,
    /// Set when this process already knows the address is locked out.
    locally_blocked: Option<Limited>,
}

/// A valid assertion always gets its token, even from an address locked out by failures:
/// otherwise anyone sharing a partner's address (a NAT, a browser tricked into posting forms)
/// could lock the partner out. Failures are what is limited: from a locked-out address a
/// failure is refused with 429 and writes nothing; otherwise it writes no record of its own,
/// only a hit on the address's per-minute counter (flushed later into one aggregated audit
/// record per address and minute).
fn refuse(
    state: &AppState,
    source: Source,
    rejection: Rejection,
    claimed: Option<String>,
) -> Result<Decision, ApiError> {
    if let Some(limited) = source.locally_blocked {
        return Ok(Decision::Limited(limited));
    }
    if let Err(limited) = state
        .abuse
        .check_failures(Limit::FailedAssertion, source.client_key)?
    {
        return Ok(Decision::Limited(limited));
    }
    let note = serde_json::json!({ "error": rejection.code(), "client_id": claimed });
    state
        .abuse
        .record_failure(Limit::FailedAssertion, source.client_key, &note.to_string())?;
    if let Some(limited) = claimed
        .as_deref()
        .and_then(|c| state.abuse.claimed_client_refusal(c))
    {
        return Ok(Decision::Limited(limited));
    }
    Ok(Decision::Refused(rejection))
}

/// The blocking part of a token request (database reads and crypto): checks it, and for a
/// valid assertion signs the token and says what its issuance writes. Writes only refusals.
fn prepare(
    state: &AppState,
    params: Result<HashMap<String, String>, Rejection>,
    source: Source,
    request_id: Option<String>,
) -> Result<Prepared, ApiError> {
    let claimed = |params: &HashMap<String, String>| {
        // The claimed client id is unverified input: a short excerpt only.
        params
            .get("client_assertion")
            .and_then(|a| assertion::claimed_client(a))
            .map(|c| excerpt(&c, EXCERPT_CHARS))
    };
    let params = match params {
        Ok(params) => params,
        Err(rejection) => return refuse(state, source, rejection, None).map(Prepared::Answer),
    };
    let now = state.clock.now();
    let client = match authenticate(state, &params, now) {
        Ok(client) => client,
        Err(Failure::Storage(error)) => return Err(error.into()),
        Err(Failure::Refused(rejection)) => {
            return refuse(state, source, rejection, claimed(&params)).map(Prepared::Answer)
        }
    };
    let subject = client.assertion.client;
    let (access_token, claims) = state
        .signing
        .issue(&subject, &client.scopes, state.auth.access_token_lifetime)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let actor = match client.organisation {
        Some(id) => Actor::Organisation(id),
        None => Actor::Publisher(subject.clone()),
    };
    let event = NewAuditEvent {
        occurred_at: now,
        actor,
        action: AuditAction::TokenIssued,
        subject_type: "client",
        subject_id: Some(subject.clone()),
        request_id,
        details: serde_json::json!({ "client_id": subject, "scope": claims.scope, "token_jti": claims.jti, "expires_at": claims.exp, "assertion_kid": client.assertion.kid }),
    };
    let issuance = Issuance {
        key: client
            .organisation
            .map(|id| (id, client.assertion.kid.clone())),
        client: subject,
        jti: client.assertion.jti,
        expires_at: client.assertion.expires_at,
        event,
    };
    let answer = TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: u64::try_from(claims.exp - claims.iat).unwrap_or(0),
        scope: claims.scope,
    };
    Ok(Prepared::Issue(answer, Box::new(issuance)))
}

/// Decides a token request. The replay check, the key's last use and the audit record commit
/// together, in a transaction shared with concurrent issuances (group commit); the token is
/// answered only after that commit.
async fn decide(
    state: web::Data<AppState>,
    params: Result<HashMap<String, String>, Rejection>,
    source: Source,
    request_id: Option<String>,
) -> Result<Decision, ApiError> {
    let shared = state.clone();
    let prepared = web::block(move || prepare(&shared, params, source, request_id)).await??;
    let (answer, issuance) = match prepared {
        Prepared::Answer(decision) => return Ok(decision),
        Prepared::Issue(answer, issuance) => (answer, *issuance),
    };
    let subject = excerpt(&issuance.client, EXCERPT_CHARS);
    if state.issuances.submit(issuance).await? {
        return Ok(Decision::Token(answer));
    }
    let replayed =
        Rejection::InvalidGrant("this client_assertion (jti) was already used".to_owned());
    web::block(move || refuse(&state, source, replayed, Some(subject))).await?
}

/// Get an access token (client credentials, authenticated with a signed JWT).
///
/// The client proves who it is with `client_assertion`, a JWT signed by one of its registered
/// keys. Errors follow RFC 6749 section 5.2.
#[utoipa::path(
    tag = "oauth",
    operation_id = "issue_token",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token", body = TokenResponse),
        (status = 400, description = "invalid_request, invalid_grant (a replayed assertion), unsupported_grant_type or invalid_scope", body = OAuthErrorResponse),
        (status = 401, description = "invalid_client: the assertion does not authenticate the client", body = OAuthErrorResponse),
        (status = 429, description = "temporarily_unavailable: too many failed token requests from this client address (across replicas), or in this client's name; only failures are refused: a valid assertion always gets its token", body = OAuthErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds until the limit's minute ends"))),
        (status = 500, description = "server_error", body = OAuthErrorResponse),
        (status = 503, description = "temporarily_unavailable: the database cannot be reached", body = OAuthErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(())
)]
#[post("/oauth2/token")]
#[tracing::instrument(name = "issue_token", skip_all)]
pub async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let client_key = state.abuse.trusted_proxies().key_of(&req);
    let body = read_body(&req, payload).await;
    // The cheap first line: from an address this process knows is locked out, a failure
    // costs no database write (a valid assertion still gets its token).
    let locally_blocked = state
        .abuse
        .locally_blocked(Limit::FailedAssertion, client_key);
    let params = body.and_then(|body| form(&req, &body));
    let request_id = RequestId::of(&req);
    let source = Source {
        client_key,
        locally_blocked,
    };
    let decision = match decide(state, params, source, request_id).await {
        Ok(decision) => decision,
        // Even our own failures answer in RFC 6749 form here, so OAuth clients read them.
        Err(error) => {
            let unavailable = matches!(error, ApiError::Unavailable(_));
            // The problem response logs the cause chain; we send only the OAuth form.
            let _ = actix_web::ResponseError::error_response(&error);
            let (status, code, description) = if unavailable {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the gateway cannot reach its database; retry later",
                )
            } else {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the gateway failed; the failure was logged",
                )
            };
            let mut response = HttpResponse::build(status);
            response.insert_header((header::CACHE_CONTROL, "no-store"));
            if unavailable {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            return Ok(response.json(OAuthErrorResponse {
                error: code.to_owned(),
                error_description: description.to_owned(),
            }));
        }
    };
    Ok(match decision {
        Decision::Token(token) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(token),
        Decision::Refused(rejection) => oauth_error(&rejection),
        Decision::Limited(limited) => too_many(limited),
    })
}

/// The gateway's public keys, for verifying its access tokens.
#[utoipa::path(
    tag = "oauth",
    operation_id = "gateway_jwks",
    responses((status = 200, description = "The published keys (the active one and any still overlapping)", body = JwksResponse)),
    security(())
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let signing = state.signing.clone();
    let set = web::block(move || signing.jwks()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(set))
}

/// Authorization server metadata (RFC 8414).
#[utoipa::path(
    tag = "oauth",
    operation_id = "authorization_server_metadata",
    responses((status = 200, description = "Where the token endpoint and keys are, and what they support", body = AuthorizationServerMetadata)),
    security(())
)]
#[get("/.well-known/oauth-authorization-server")]
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let base = &state.public_base_url;
    HttpResponse::Ok().json(AuthorizationServerMetadata {
        issuer: state.signing.issuer().to_owned(),
        token_endpoint: format!("{base}/oauth2/token"),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        grant_types_supported: vec!["client_credentials".to_owned()],
        token_endpoint_auth_methods_supported: vec!["private_key_jwt".to_owned()],
        token_endpoint_auth_signing_alg_values_supported: [
            "RS256", "RS384", "RS512", "ES256", "EdDSA",
        ]
        .map(str::to_owned)
        .to_vec(),
        scopes_supported: Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
    })
}
