//! The OpenAPI 3.1 document: the base (info, tags, security schemes) plus every path that
//! `routes::configure` registers. Built without a database or a server.

use actix_web::App;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
