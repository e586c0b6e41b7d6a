//! Request extractors: JSON bodies that name the failing field, `If-Match`, and the
//! registration-token caller.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use gateway_domain::{OrganisationId, ReviewerIdentity, Role, Scope, Version};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;

use crate::auth::oidc::OidcError;
use crate::credentials::PresentedToken;
use crate::error::{ApiError, FieldProblem};
use crate::state::AppState;

/// The JSON body limit in force, set from configuration.
#[derive(Debug, Clone, Copy)]
pub struct JsonLimit(pub usize);

/// A JSON body deserialised with the path of any failing field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    req.mime_type().ok().flatten().is_some_and(|mime| {
        mime.type_() == "application"
            && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<JsonLimit>().map_or(64 * 1024, |l| l.0);
        let json = is_json(req);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if declared_length.is_some_and(|n| n > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            if !json {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "expected Content-Type: application/json, got {content_type}"
                )));
            }
            let body = bytes
                .await
                .map_err(|error| match error.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => ApiError::PayloadTooLarge { limit },
                    Some(error) if crate::body_deadline::is_deadline(error) => {
                        ApiError::BodyTimeout
                    }
                    _ => ApiError::Malformed {
                        detail: "the body could not be read".to_owned(),
                        errors: Vec::new(),
                    },
                })?;
            if body.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            Ok(JsonBody(parse_json(&body)?))
        })
    }
}

/// Reads a streamed body of at most `limit` bytes within the body deadline.
pub(crate) async fn read_limited(
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            if crate::body_deadline::is_deadline(&error) {
                ApiError::BodyTimeout
            } else {
                ApiError::Malformed {
                    detail: "the body could not be read".to_owned(),
                    errors: Vec::new(),
                }
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JSON document from bytes, naming the failing field as `JsonBody` does.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(describe_json_error)
}

/// Turns a serde error into a problem naming the field and the rule.
fn describe_json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.inner();
    let mut message = inner.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    // The path may or may not already end at the unknown or missing field.
    let join = |name: &str| {
        if path.is_empty() || path == "." {
            name.to_owned()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.clone()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = |msg: &str, lead: &str| {
        msg.strip_prefix(lead)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let (field, rule) = if let Some(name) = quoted(&message, "unknown field `") {
        (join(&name), "unknown_field")
    } else if let Some(name) = quoted(&message, "missing field `") {
        (join(&name), "required")
    } else if inner.is_syntax() || inner.is_eof() {
        (String::new(), "json_syntax")
    } else if path == "." {
        (String::new(), "type")
    } else {
        (path.clone(), "type")
    };
    let detail = if field.is_empty() {
        message.clone()
    } else {
        format!("{field}: {message}")
    };
    ApiError::Malformed {
        detail,
        errors: vec![FieldProblem {
            field,
            rule: rule.to_owned(),
            message,
        }],
    }
}

/// Splits an `If-Match` list of entity tags (`"a", W/"b"`; RFC 9110 section 8.8.3). A tag's
/// opaque part may hold any character but `"`, commas included, so this reads quoted strings
/// rather than splitting on commas.
fn parse_entity_tags(raw: &str) -> Result<Vec<String>, ()> {
    let mut tags = Vec::new();
    let mut rest = raw.trim_start_matches([' ', '\t']);
    loop {
        let weak = rest.starts_with("W/");
        let body = if weak { &rest[2..] } else { rest };
        let body = body.strip_prefix('"').ok_or(())?;
        let end = body.find('"').ok_or(())?;
        let tag_len = if weak { 2 } else { 0 } + end + 2;
        tags.push(rest[..tag_len].to_owned());
        rest = rest[tag_len..].trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Ok(tags);
        }
        rest = rest
            .strip_prefix(',')
            .ok_or(())?
            .trim_start_matches([' ', '\t']);
    }
}

/// The `If-Match` precondition of a write: required, and must name a version.
#[derive(Debug)]
pub struct IfMatch(pub Vec<String>);

impl IfMatch {
    pub fn etag(version: Version) -> String {
        format!("\"{}\"", version.0)
    }

    /// Whether the current `version` satisfies the precondition (strong comparison).
    pub fn matches(&self, version: Version) -> bool {
        let current = Self::etag(version);
        self.0.contains(&current)
    }
}

/// An `If-Match` that may be absent: the service answers 428 for a missing one only after
/// authorisation and lookup, so the answers come in the documented order.
#[derive(Debug)]
pub struct OptionalIfMatch(pub Option<IfMatch>);

impl OptionalIfMatch {
    /// The versions named by strong tags.
    pub fn precondition(&self) -> Option<gateway_domain::services::Precondition> {
        self.0.as_ref().map(|tags| {
            gateway_domain::services::Precondition(
                tags.0
                    .iter()
                    .filter_map(|t| t.strip_prefix('"')?.strip_suffix('"')?.parse().ok())
                    .map(Version)
                    .collect(),
            )
        })
    }
}

impl FromRequest for OptionalIfMatch {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if req.headers().get(header::IF_MATCH).is_none() {
            return std::future::ready(Ok(Self(None)));
        }
        std::future::ready(
            IfMatch::from_request(req, payload)
                .into_inner()
                .map(|m| Self(Some(m))),
        )
    }
}

impl FromRequest for IfMatch {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(value) = req.headers().get(header::IF_MATCH) else {
            return std::future::ready(Err(ApiError::PreconditionRequired(
                "send If-Match with the ETag from your last read of this resource",
            )));
        };
        let raw = value.to_str().unwrap_or_default().trim();
        if raw == "*" {
            return std::future::ready(Err(ApiError::PreconditionRequired(
                "If-Match must carry the ETag from your last read; '*' would allow lost updates",
            )));
        }
        let tags = match parse_entity_tags(raw) {
            Ok(tags) if !tags.is_empty() => tags,
            _ => {
                let message = format!(
                    "{raw:?} is not a list of entity tags: send the ETag as received, e.g. \"3\""
                );
                return std::future::ready(Err(ApiError::Malformed {
                    detail: format!("If-Match: {message}"),
                    errors: vec![FieldProblem {
                        field: "If-Match".to_owned(),
                        rule: "entity_tag".to_owned(),
                        message,
                    }],
                }));
            }
        };
        std::future::ready(Ok(IfMatch(tags)))
    }
}

/// The id the request-id middleware gave this request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn of(req: &HttpRequest) -> Option<String> {
        req.extensions().get::<RequestId>().map(|r| r.0.clone())
    }
}

/// The bearer token of the request, if any.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| {
            ApiError::internal(std::io::Error::other("application state not configured"))
        })
}

/// The organisation whose live registration access token `presented` is, or 401. A rotated
/// or revoked token is no longer stored, so it fails here like an unknown one.
async fn registration_token_owner(
    state: &AppState,
    presented: &PresentedToken,
) -> Result<OrganisationId, ApiError> {
    let repo = state.organisations.clone();
    let selector = presented.selector.clone();
    let stored = web::block(move || repo.find_credential(&selector)).await??;
    match stored {
        Some(stored) if presented.matches(&stored.secret_sha256) => Ok(stored.organisation_id),
        _ => Err(ApiError::Unauthorized("invalid bearer token")),
    }
}

/// The organisation of a gateway access token with the `organisation:manage` scope: 401 for
/// an invalid token, 403 for one without the scope.
async fn managing_access_token(
    state: &AppState,
    token: String,
) -> Result<OrganisationId, ApiError> {
    let signing = state.signing.clone();
    let claims = web::block(move || signing.verify(&token))
        .await?
        .ok_or(ApiError::Unauthorized("invalid bearer token"))?;
    if !claims.scopes().contains(&Scope::OrganisationManage) {
        return Err(ApiError::Forbidden(
            "this token lacks the organisation:manage scope".to_owned(),
        ));
    }
    let id = uuid::Uuid::parse_str(&claims.sub)
        .map_err(|_| ApiError::Forbidden("this token is not an organisation's".to_owned()))?;
    Ok(OrganisationId::from_uuid(id))
}

/// An organisation managing its own registration: by its registration access token, or by a
/// gateway access token with the `organisation:manage` scope.
#[derive(Debug, Clone, Copy)]
pub struct OrganisationCaller(pub OrganisationId);

impl FromRequest for OrganisationCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = app_state(req);
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthorized("missing bearer token"))?;
            let state = state?;
            if let Some(presented) = PresentedToken::parse(&token) {
                return registration_token_owner(&state, &presented)
                    .await
                    .map(OrganisationCaller);
            }
            managing_access_token(&state, token)
                .await
                .map(OrganisationCaller)
        })
    }
}

/// An organisation by its registration access token only: what changing keys and rotating
/// the token itself need. A valid access token (5 minutes, obtained with the keys it would
/// change) is authenticated but not enough: 403, so one leaked access token never becomes
/// permanent access.
#[derive(Debug, Clone)]
pub struct RegistrationTokenCaller {
    pub organisation: OrganisationId,
    /// The presented token's selector: a rotation replaces exactly this credential.
    pub selector: String,
}

impl RegistrationTokenCaller {
    pub fn organisation(&self) -> OrganisationCaller {
        OrganisationCaller(self.organisation)
    }

    /// Checks again, just before a write, that the token still stands. The extractor checked
    /// it before the body was read, and a client may take its time sending a body: a token
    /// rotated or revoked meanwhile must not complete a change it began before.
    pub async fn reconfirm(&self, state: &AppState) -> Result<(), ApiError> {
        let repo = state.organisations.clone();
        let selector = self.selector.clone();
        let stored = web::block(move || repo.find_credential(&selector)).await??;
        match stored {
            Some(stored) if stored.organisation_id == self.organisation => Ok(()),
            _ => Err(ApiError::Unauthorized(
                "this registration token was rotated or revoked",
            )),
        }
    }
}

impl FromRequest for RegistrationTokenCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = app_state(req);
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthorized("missing bearer token"))?;
            let state = state?;
            if let Some(presented) = PresentedToken::parse(&token) {
                let organisation = registration_token_owner(&state, &presented).await?;
                return Ok(RegistrationTokenCaller {
                    organisation,
                    selector: presented.selector,
                });
            }
            managing_access_token(&state, token).await?;
            Err(ApiError::Forbidden(
                "this needs the registration access token: access tokens cannot change keys, contacts or domains, nor rotate the token".to_owned(),
            ))
        })
    }
}

/// A national reviewer: by session cookie (people) or by the identity provider's bearer token
/// (automation).
#[derive(Debug, Clone)]
pub struct ReviewerCaller(pub ReviewerIdentity);

impl ReviewerCaller {
    /// The caller, if they hold any of `roles`; 403 otherwise.
    pub fn require_any(self, roles: &[Role]) -> Result<ReviewerIdentity, ApiError> {
        if roles.iter().any(|role| self.0.has(*role)) {
            Ok(self.0)
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs one of the roles: {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

impl FromRequest for ReviewerCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = app_state(req);
        let req = req.clone();
        Box::pin(async move {
            let state = state?;
            let Some(token) = token else {
                let session = signed_in(&req, &state)
                    .await?
                    .ok_or(ApiError::Unauthorized(
                        "log in at /auth/login or send the identity provider's bearer token",
                    ))?;
                if let Some(why) = cross_site_refusal(&req, &state, &session.csrf_token) {
                    return Err(ApiError::Csrf(why));
                }
                let identity = session.identity.clone();
                // Handlers that need the session itself (its CSRF token, sign-out) find it here.
                req.extensions_mut().insert(session);
                return Ok(ReviewerCaller(identity));
            };
            let oidc = state.oidc.clone().ok_or(ApiError::Unauthorized(
                "reviewer sign-in is not configured on this gateway",
            ))?;
            match oidc.verify_bearer(&token).await {
                Ok(identity) => Ok(ReviewerCaller(identity)),
                Err(OidcError::Unavailable(why)) => Err(ApiError::Unavailable(why.into())),
                Err(OidcError::Rejected(why)) => {
                    tracing::info!(reason = %why, "reviewer bearer token refused");
                    Err(ApiError::Unauthorized("invalid bearer token"))
                }
            }
        })
    }
}

/// The live server-side session the request's `gw_session` cookie stands for, if any.
pub(crate) async fn signed_in(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<crate::auth::session::Session>, ApiError> {
    match crate::auth::session::SessionCodec::session_id(req) {
        Some(id) => state.session_store.current(&id).await,
        None => Ok(None),
    }
}

/// The session the `ReviewerCaller` extractor found for this request (none for bearer
/// tokens).
pub(crate) fn session_of(req: &HttpRequest) -> Option<crate::auth::session::Session> {
    req.extensions()
        .get::<crate::auth::session::Session>()
        .cloned()
}

/// Why a change made with the session cookie looks cross-site, if it does. Safe methods pass;
/// others need an `Origin` (or, failing that, `Referer`) of the gateway's own origin and the
/// session's `X-CSRF-Token`. The cookie is also `SameSite=Lax`.
pub(crate) fn cross_site_refusal(
    req: &HttpRequest,
    state: &AppState,
    csrf: &str,
) -> Option<&'static str> {
    use actix_web::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let own = url::Url::parse(&state.public_base_url)
        .ok()
        .map(|u| u.origin().ascii_serialization());
    let origin_of = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| url::Url::parse(v).ok())
            .map(|u| u.origin().ascii_serialization())
    };
    let claimed = origin_of(header::ORIGIN).or_else(|| origin_of(header::REFERER));
    if claimed.is_none() || claimed != own {
        return Some("the request does not come from the gateway's own origin");
    }
    let presented = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        presented.as_bytes(),
        csrf.as_bytes(),
    )) {
        return Some("X-CSRF-Token is missing or does not match the session");
    }
    None
}

/// The claims of the request's gateway access token: 401 when it is missing or does not verify.
async fn access_claims(
    state: &AppState,
    token: Option<String>,
) -> Result<crate::auth::signing::AccessClaims, ApiError> {
    let token = token.ok_or(ApiError::Unauthorized("missing bearer token"))?;
    let signing = state.signing.clone();
    web::block(move || signing.verify(&token))
        .await?
        .ok_or(ApiError::Unauthorized("invalid bearer token"))
}

/// The internal publisher (directory and calendars), calling with a gateway access token;
/// each route requires the scope it needs (`directory:write`, `calendar:write`).
#[derive(Debug, Clone)]
pub struct PublisherCaller {
    pub client_id: String,
    pub scopes: Vec<Scope>,
}

impl PublisherCaller {
    /// Refuses (403) a token without `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token lacks the {scope} scope"
            )))
        }
    }
}

impl FromRequest for PublisherCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = app_state(req);
        Box::pin(async move {
            let state = state?;
            let claims = access_claims(&state, token).await?;
            let publisher = state
                .publisher
                .as_ref()
                .filter(|p| p.client_id == claims.sub)
                .ok_or_else(|| {
                    ApiError::Forbidden("only the directory publisher may do this".to_owned())
                })?;
            Ok(PublisherCaller {
                client_id: publisher.client_id.clone(),
                scopes: claims.scopes(),
            })
        })
    }
}

/// A partner system calling a data endpoint with a gateway access token.
#[derive(Debug, Clone)]
pub struct PartnerCaller {
    pub organisation: OrganisationId,
    pub scopes: Vec<Scope>,
}

impl PartnerCaller {
    /// The organisation's grant in force now, if the token carries `scope` and the grant
    /// still covers it: re-read on every request, so a suspension takes effect at once.
    pub async fn granted(
        &self,
        state: &AppState,
        scope: Scope,
    ) -> Result<gateway_domain::Grant, ApiError> {
        if !self.scopes.contains(&scope) {
            return Err(ApiError::Forbidden(format!(
                "this token lacks the {scope} scope"
            )));
        }
        let services = state.services.clone();
        let organisation = self.organisation;
        let grant = web::block(move || services.current_grant(organisation)).await??;
        grant
            .filter(|g| g.scopes().contains(&scope))
            .ok_or(ApiError::GrantInactive)
    }
}

impl FromRequest for PartnerCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = app_state(req);
        Box::pin(async move {
            let state = state?;
            let claims = access_claims(&state, token).await?;
            let id = uuid::Uuid::parse_str(&claims.sub).map_err(|_| {
                ApiError::Forbidden("this token is not an organisation's".to_owned())
            })?;
            Ok(PartnerCaller {
                organisation: OrganisationId::from_uuid(id),
                scopes: claims.scopes(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed(json: &str) -> (String, String) {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            email: String,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            name: String,
            contact: Inner,
            domains: Vec<String>,
        }
        let de = &mut serde_json::Deserializer::from_str(json);
        let error = serde_path_to_error::deserialize::<_, Outer>(de).unwrap_err();
        match describe_json_error(error) {
            ApiError::Malformed { errors, .. } => (errors[0].field.clone(), errors[0].rule.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field_and_rule() {
        assert_eq!(
            malformed(r#"{"name":"x","contact":{"email":"a"},"domains":[],"extra":1}"#),
            ("extra".into(), "unknown_field".into())
        );
        assert_eq!(
            malformed(r#"{"name":"x","contact":{"email":"a","x":1},"domains":[]}"#),
            ("contact.x".into(), "unknown_field".into())
        );
        assert_eq!(
            malformed(r#"{"name":"x","domains":[]}"#),
            ("contact".into(), "required".into())
        );
        assert_eq!(
            malformed(r#"{"name":"x","contact":{},"domains":[]}"#),
            ("contact.email".into(), "required".into())
        );
        assert_eq!(
            malformed(r#"{"name":"x","contact":{"email":"a"},"domains":[1]}"#),
            ("domains[0]".into(), "type".into())
        );
        assert_eq!(
            malformed(r#"{"name":"#),
            (String::new(), "json_syntax".into())
        );
        assert_eq!(
            malformed(r#""just a string""#),
            (String::new(), "type".into())
        );
    }

    #[test]
    fn entity_tag_lists_are_read_as_quoted_strings() {
        assert_eq!(parse_entity_tags("\"1\""), Ok(vec!["\"1\"".to_owned()]));
        assert_eq!(
            parse_entity_tags("W/\"a\" ,\t\"b,c\",\"\""),
            Ok(vec![
                "W/\"a\"".to_owned(),
                "\"b,c\"".to_owned(),
                "\"\"".to_owned()
            ])
        );
        for bad in [
            "1",
            "{}",
            "\"1",
            "W/1",
            "\"a\"b\"",
            "*",
            "\"a\",",
            "\"a\" \"b\"",
        ] {
            assert!(parse_entity_tags(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn if_match_compares_strongly() {
        let tags = IfMatch(vec!["\"2\"".into(), "W/\"3\"".into()]);
        assert!(tags.matches(Version(2)));
        assert!(!tags.matches(Version(3)), "weak tags never match If-Match");
        assert!(!tags.matches(Version(1)));
    }
}
