//! The problem types' descriptions, served at the URIs the problems' `type` names.

use actix_web::{get, web, HttpResponse};

use crate::dto::ProblemTypeResponse;
use crate::error::{ApiError, Problem, ProblemKind};

/// Describes a problem type.
#[utoipa::path(
    tag = "operations",
    operation_id = "get_problem_type",
    params(("slug" = ProblemKind, Path, description = "The problem type, e.g. `validation-failed`")),
    responses(
        (status = 200, description = "The problem type", body = ProblemTypeResponse),
        (status = 404, description = "No such problem type", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[get("/problems/{slug}")]
pub async fn problem_type(slug: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let kind = ProblemKind::from_slug(&slug).ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(ProblemTypeResponse {
        problem_type: kind.type_uri(),
        title: kind.title().to_owned(),
        status: kind.status().as_u16(),
        description: kind.description().to_owned(),
    }))
}
