//! The OpenAPI 3.1 document: the base (info, tags, security schemes) plus every path that
//! `routes::configure` registers. Built without a database or a server.

use actix_web::App;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2,
    OpenIdConnect, Scopes, SecurityScheme,
};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::error::{FieldProblem, Problem, ProblemKind};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Federation Gateway",
        description = "Lets external care organisations federate with the national health-and-care email and directory platform: registration, information-governance evidence and partner agreements; then address-book sync deltas and calendar free/busy for approved partners.\n\nErrors are RFC 9457 problem details (`application/problem+json`); each `type` is a stable URI under `/problems/` that the gateway serves as documentation.",
        license(name = "MIT", identifier = "MIT"),
    ),
    servers((url = "/", description = "The gateway that serves this document")),
    tags(
        (name = "registration", description = "Register an organisation and manage its registration"),
        (name = "keys", description = "An organisation's own public keys, rotated self-service"),
        (name = "oauth", description = "Access tokens for partners and the publisher (client credentials with signed-JWT client authentication)"),
        (name = "evidence", description = "Information-governance evidence: DSPT assessment, ICO registration, policies, DPIA"),
        (name = "agreements", description = "Partner agreements: templates, drafts, signatures, submission, and the grant in force"),
        (name = "review", description = "The review workflow: queue, verdicts, the two-person lifecycle, rejecting registrations"),
        (name = "reviewers", description = "National reviewers: OpenID Connect sign-in and the organisation list"),
        (name = "directory", description = "The national directory's publisher: batches of entry changes (internal)"),
        (name = "address_book", description = "Address-book sync for approved partners: a snapshot of your view, then the change feed"),
        (name = "calendars", description = "The national calendars' publisher: busy blocks and working hours per mailbox (internal)"),
        (name = "free-busy", description = "Free/busy of national mailboxes for approved partners, as JSON or iCalendar"),
        (name = "audit", description = "The tamper-evident audit trail: sealed records, signed checkpoints, RFC 9162 proofs, verification"),
        (name = "operations", description = "Health, readiness and problem-type documentation"),
    ),
    components(schemas(Problem, FieldProblem, ProblemKind)),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "registration_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The registration_access_token returned once by POST /v1/registrations.",
                    ))
                    .build(),
            ),
        );
        let scopes = Scopes::from_iter(gateway_domain::Scope::ALL.map(|scope| {
            let description = match scope {
                gateway_domain::Scope::OrganisationManage => {
                    "Manage the organisation's own registration and keys"
                }
                gateway_domain::Scope::AddressBookRead => {
                    "Read address-book sync deltas (approved agreements only)"
                }
                gateway_domain::Scope::FreeBusyRead => {
                    "Read calendar free/busy (approved agreements only)"
                }
                gateway_domain::Scope::DirectoryWrite => {
                    "Publish directory entries (the internal publisher)"
                }
                gateway_domain::Scope::CalendarWrite => {
                    "Publish calendar busy blocks (the internal publisher)"
                }
            };
            (scope.as_str(), description)
        }));
        let mut oauth = OAuth2::new([Flow::ClientCredentials(ClientCredentials::new(
            "/oauth2/token",
            scopes,
        ))]);
        oauth.description = Some(
            "Client credentials; the client authenticates with a JWT signed by one of its registered keys (private_key_jwt, RFC 7523).".to_owned(),
        );
        components.add_security_scheme("partner_oauth", SecurityScheme::OAuth2(oauth));
        let mut oidc = OpenIdConnect::new("/.well-known/reviewer-openid-configuration");
        oidc.description = Some(
            "A JWT access token from the national identity provider, for reviewer automation."
                .to_owned(),
        );
        components.add_security_scheme("reviewer_oidc", SecurityScheme::OpenIdConnect(oidc));
        components.add_security_scheme(
            "reviewer_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::session::SESSION_COOKIE,
                "The session cookie set by /auth/callback after sign-in at /auth/login: an opaque id of a server-side session that ends at sign-out, after oidc.session_idle_minutes unused, or oidc.session_lifetime_minutes after sign-in. Changes made with it need the session's X-CSRF-Token (from GET /auth/me) and the gateway's own Origin.",
            ))),
        );
    }
}

/// The whole document, exactly as served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut api) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}
