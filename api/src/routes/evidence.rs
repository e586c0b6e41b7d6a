//! Information-governance evidence: organisations upload items (with an optional PDF), list
//! them and read their documents; reviewers read documents and record verdicts.

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{get, post, web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use gateway_domain::evidence::{EvidenceForm, EvidenceId, MAX_DOCUMENT_BYTES};
use gateway_domain::services::evidence::Upload;
use gateway_domain::{Actor, Evidence, OrganisationId, Role};
use uuid::Uuid;

use crate::credentials::sha256_hex;
use crate::dto::{EvidenceListResponse, EvidenceMetadata, EvidenceResponse, VerdictRequest};
use crate::error::{ApiError, FieldProblem, Problem};
use crate::extract::{parse_json, JsonBody, OrganisationCaller, RequestId, ReviewerCaller};
use crate::routes::registrations::own_organisation;
use crate::routes::reviewer_context;
use crate::state::AppState;

/// The most the `metadata` part may weigh.
const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Room for multipart boundaries and part headers on top of the parts themselves.
const MULTIPART_OVERHEAD: usize = 16 * 1024;

fn malformed(field: &str, rule: &str, message: &str) -> ApiError {
    ApiError::Malformed {
        detail: format!("{field}: {message}"),
        errors: vec![FieldProblem {
            field: field.to_owned(),
            rule: rule.to_owned(),
            message: message.to_owned(),
        }],
    }
}

/// Reads a part to the end, refusing it once it passes `limit` bytes.
async fn read_part(
    field: &mut actix_multipart::Field,
    limit: usize,
    too_large: impl Fn() -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk =
            chunk.map_err(|_| malformed("document", "multipart", "the part could not be read"))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Reads an upload: plain JSON metadata, or `multipart/form-data` with a `metadata` part and
/// an optional `document` part. Nothing is stored until all of it has been read and checked.
async fn read_upload(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(EvidenceMetadata, Option<Upload>), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || ApiError::PayloadTooLarge {
        limit: MAX_DOCUMENT_BYTES,
    };
    let mime = req.mime_type().ok().flatten();
    let essence = mime.as_ref().map(|m| m.essence_str().to_owned());
    match essence.as_deref() {
        Some("application/json") => {
            if declared.is_some_and(|n| n > MAX_METADATA_BYTES) {
                return Err(ApiError::PayloadTooLarge {
                    limit: MAX_METADATA_BYTES,
                });
            }
            let mut body = Vec::new();
            let mut payload = payload;
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|error| {
                    if crate::body_deadline::is_deadline(&error) {
                        ApiError::BodyTimeout
                    } else {
                        malformed("", "body", "the body could not be read")
                    }
                })?;
                if body.len() + chunk.len() > MAX_METADATA_BYTES {
                    return Err(ApiError::PayloadTooLarge {
                        limit: MAX_METADATA_BYTES,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok((parse_json(&body)?, None))
        }
        Some("multipart/form-data") => {
            if declared.is_some_and(|n| n > MAX_DOCUMENT_BYTES + MAX_METADATA_BYTES + MULTIPART_OVERHEAD) {
                return Err(too_large());
            }
            let mut multipart = Multipart::new(req.headers(), payload);
            let mut metadata = None;
            let mut document = None;
            let mut ignored = 0usize;
            while let Some(field) = multipart.next().await {
                let mut field = field.map_err(|_| {
                    malformed("", "multipart", "the body is not valid multipart/form-data")
                })?;
                match field.name() {
                    Some("metadata") if metadata.is_none() => {
                        let bytes = read_part(&mut field, MAX_METADATA_BYTES, || {
                            ApiError::PayloadTooLarge {
                                limit: MAX_METADATA_BYTES,
                            }
                        })
                        .await?;
                        metadata = Some(parse_json::<EvidenceMetadata>(&bytes)?);
                    }
                    Some("document") if document.is_none() => {
                        let filename = field
                            .content_disposition()
                            .and_then(|cd| cd.get_filename())
                            .map(str::to_owned);
                        let bytes = read_part(&mut field, MAX_DOCUMENT_BYTES, too_large).await?;
                        let sha256 = sha256_hex(&bytes);
                        document = Some(Upload {
                            bytes,
                            filename,
                            sha256,
                        });
                    }
                    Some(name @ ("metadata" | "document")) => {
                        return Err(malformed(name, "unique_part", "this part appears more than once"))
                    }
                    // Other parts (a form's submit button, say) are read within the
                    // metadata bound and dropped: only `metadata` and `document` count.
                    _ => {
                        let over = || ApiError::PayloadTooLarge {
                            limit: MAX_METADATA_BYTES,
                        };
                        ignored += read_part(&mut field, MAX_METADATA_BYTES, over).await?.len();
                        if ignored > MAX_METADATA_BYTES {
                            return Err(over());
                        }
                    }
                }
            }
            let metadata = metadata
                .ok_or_else(|| malformed("metadata", "required", "the metadata part is required"))?;
            Ok((metadata, document))
        }
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "send application/json (metadata only) or multipart/form-data (metadata and document), not {}",
            essence.unwrap_or_else(|| "none".to_owned())
        ))),
    }
}

fn render_list(items: &[Evidence], now: chrono::DateTime<chrono::Utc>) -> EvidenceListResponse {
    EvidenceListResponse {
        items: items
            .iter()
            .map(|e| EvidenceResponse::new(e, now).for_partner())
            .collect(),
    }
}

/// Submit an evidence item.
///
/// Send `application/json` with the metadata alone, or `multipart/form-data` with a
/// `metadata` part (JSON) and a `document` part: a PDF (recognised by its content) of at most
/// 10 MiB, whose SHA-256 is recorded. A new item of a kind supersedes older unjudged items of
/// that kind; an accepted item stays in force until the new one is accepted.
#[utoipa::path(
    tag = "evidence",
    operation_id = "submit_evidence",
    params(("id" = Uuid, Path, description = "The organisation id")),
    request_body(content(
        (EvidenceMetadata = "application/json"),
        (crate::dto::EvidenceUpload = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "Stored", body = EvidenceResponse,
            headers(("Location" = String, description = "The organisation's evidence list"))),
        (status = 400, description = "Malformed JSON or multipart, unknown field or part", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The registration was rejected", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Document over 10 MiB (nothing stored)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor multipart, or the document is not a PDF", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields break the evidence rules", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[post("/v1/organisations/{id}/evidence")]
#[tracing::instrument(name = "submit_evidence", skip_all, fields(organisation_id = %id))]
pub async fn submit(
    req: HttpRequest,
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let organisation = own_organisation(caller, &id)?;
    let (metadata, document) = read_upload(&req, payload).await?;
    let form = EvidenceForm::from(&metadata);
    let ctx = gateway_domain::services::Context {
        actor: Actor::Organisation(organisation),
        request_id: RequestId::of(&req),
    };
    let services = state.services.clone();
    let evidence =
        web::block(move || services.submit_evidence(&ctx, organisation, &form, document)).await??;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/organisations/{organisation}/evidence"),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(EvidenceResponse::new(&evidence, state.clock.now()).for_partner()))
}

/// List the organisation's evidence, newest first, with each item's status.
#[utoipa::path(
    tag = "evidence",
    operation_id = "list_evidence",
    params(("id" = Uuid, Path, description = "The organisation id")),
    responses(
        (status = 200, description = "The evidence", body = EvidenceListResponse),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organisation visible to this token", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[get("/v1/organisations/{id}/evidence")]
pub async fn list(
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let organisation = own_organisation(caller, &id)?;
    let services = state.services.clone();
    let items = web::block(move || services.list_evidence(organisation)).await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(render_list(&items, state.clock.now())))
}

fn evidence_id(raw: &str) -> Result<EvidenceId, ApiError> {
    Uuid::parse_str(raw)
        .map(EvidenceId::from_uuid)
        .map_err(|_| ApiError::NotFound)
}

/// A document served so that a browser never renders it inline or runs anything in it.
fn document_response(evidence: &Evidence, bytes: Vec<u8>) -> HttpResponse {
    let (filename, sha256) = evidence
        .document
        .as_ref()
        .map(|d| (d.filename.clone(), d.sha256.clone()))
        .unwrap_or_default();
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/pdf"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header(("Digest", format!("sha-256={sha256}")))
        .body(bytes)
}

/// Download an evidence document (the owning organisation).
#[utoipa::path(
    tag = "evidence",
    operation_id = "get_evidence_document",
    params(
        ("id" = Uuid, Path, description = "The organisation id"),
        ("eid" = Uuid, Path, description = "The evidence id"),
    ),
    responses(
        (status = 200, description = "The PDF, as an attachment", content_type = "application/pdf", body = Vec<u8>),
        (status = 401, description = "No valid registration access token or access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An access token without organisation:manage", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item, or it has no document", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("registration_token" = []), ("partner_oauth" = ["organisation:manage"]))
)]
#[get("/v1/organisations/{id}/evidence/{eid}/document")]
pub async fn own_document(
    caller: OrganisationCaller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, eid) = path.into_inner();
    let organisation: OrganisationId = own_organisation(caller, &id)?;
    let eid = evidence_id(&eid)?;
    let services = state.services.clone();
    let (evidence, bytes) =
        web::block(move || services.evidence_document(Some(organisation), eid)).await??;
    Ok(document_response(&evidence, bytes))
}

/// Download an evidence document (reviewers, approvers and auditors).
#[utoipa::path(
    tag = "review",
    operation_id = "review_get_evidence_document",
    params(("eid" = Uuid, Path, description = "The evidence id")),
    responses(
        (status = 200, description = "The PDF, as an attachment", content_type = "application/pdf", body = Vec<u8>),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the reviewer, approver or auditor role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item, or it has no document", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/v1/review/evidence/{eid}/document")]
pub async fn review_document(
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    eid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_any(&[Role::Reviewer, Role::Approver, Role::Auditor])?;
    let eid = evidence_id(&eid)?;
    let services = state.services.clone();
    let (evidence, bytes) = web::block(move || services.evidence_document(None, eid)).await??;
    Ok(document_response(&evidence, bytes))
}

/// Record a verdict on an evidence item (reviewer role, a person).
///
/// A judged item never changes. Accepting an item supersedes the older items of its kind.
#[utoipa::path(
    tag = "review",
    operation_id = "review_evidence_verdict",
    params(("eid" = Uuid, Path, description = "The evidence id")),
    request_body(content = VerdictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The judged item", body = EvidenceResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the reviewer role and a person (not an automation token), or a cross-site request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already judged", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid verdict or reason, or accepting expired evidence", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[post("/v1/review/evidence/{eid}/verdict")]
pub async fn verdict(
    req: HttpRequest,
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    eid: web::Path<String>,
    body: JsonBody<VerdictRequest>,
) -> Result<HttpResponse, ApiError> {
    // A malformed id names nothing: it answers 404 after the role check, like an unknown one.
    let eid = EvidenceId::from_uuid(crate::routes::parse_id(&eid));
    let (ctx, reviewer) = reviewer_context(&req, caller);
    let services = state.services.clone();
    let judged = web::block(move || {
        services.judge_evidence(&ctx, &reviewer, eid, &body.0.verdict, &body.0.reason)
    })
    .await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(EvidenceResponse::new(&judged, state.clock.now())))
}
