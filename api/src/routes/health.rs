//! Liveness (the process answers) and readiness (the database answers).

use actix_web::{get, web, HttpResponse};

use crate::dto::HealthResponse;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// Liveness: the process is up.
#[utoipa::path(
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "The process is up", body = HealthResponse)),
    security(())
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "ok".into(),
        database: None,
    })
}

/// Readiness: the database answers a query.
#[utoipa::path(
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to serve", body = HealthResponse),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let health = state.health.clone();
    web::block(move || health.ping()).await??;
    Ok(HttpResponse::Ok().json(HealthResponse {
        status: "ready".into(),
        database: Some(state.backend_name.to_owned()),
    }))
}
