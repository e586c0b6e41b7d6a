//! The audit trail for auditors: the sealed records (filtered, paged, exported as CSV or JSON
//! Lines), signed checkpoints, RFC 9162 inclusion and consistency proofs, verification, and
//! the keys that ever signed a checkpoint.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{get, web, HttpRequest, HttpResponse};
use gateway_domain::audit::hex;
use gateway_domain::services::audit::VerifyReport;
use gateway_domain::{AuditFilter, Role, SealedRecord};

use crate::credentials::sha256_hex;
use crate::dto::{
    AuditEventResponse, AuditListResponse, AuditQuery, BadRecordResponse, CheckpointResponse,
    ConsistencyProofResponse, ConsistencyQuery, InclusionProofResponse, InclusionQuery,
    VerifyResponse,
};
use crate::error::{ApiError, Problem};
use crate::extract::ReviewerCaller;
use crate::state::AppState;

/// How the trail is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    JsonLines,
}

fn format_of(req: &HttpRequest) -> Format {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.contains("text/csv") {
        Format::Csv
    } else if accept.contains("application/x-ndjson") || accept.contains("application/jsonl") {
        Format::JsonLines
    } else {
        Format::Json
    }
}

/// A cell that a spreadsheet would run as a formula is neutralised (OWASP CSV injection):
/// a leading `=`, `+`, `-`, `@`, tab or carriage return gets a `'` in front.
pub(crate) fn csv_cell(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        csv_quoted(&format!("'{value}"))
    } else {
        csv_quoted(value)
    }
}

/// A cell as RFC 4180 has it, value unchanged: quoted when it holds a comma, quote or line
/// break, inner quotes doubled. For values a receiving system must get verbatim (addresses,
/// phone numbers, ids for Exchange's contact import), which a spreadsheet might still read
/// as a formula: such a file is for the import, not for opening in a spreadsheet.
pub(crate) fn csv_quoted(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

const CSV_HEADER: &str =
    "position,id,occurred_at,actor_type,actor_id,action,subject_type,subject_id,request_id,details,hash\n";

fn csv_row(record: &SealedRecord) -> String {
    let e = &record.event;
    let cells = [
        e.position.map(|p| p.to_string()).unwrap_or_default(),
        e.id.to_string(),
        e.occurred_at.to_rfc3339(),
        e.actor_type.clone(),
        e.actor_id.clone().unwrap_or_default(),
        e.action.clone(),
        e.subject_type.clone(),
        e.subject_id.clone().unwrap_or_default(),
        e.request_id.clone().unwrap_or_default(),
        e.details.to_string(),
        record.hash.clone(),
    ];
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// Read the sealed audit trail (auditors).
///
/// Records appear once the sequencer has sealed them (a fraction of a second after they
/// commit), in the order they were sealed, so paging never skips one. Filters: organisation,
/// actor, action, time range. `Accept: text/csv` or `application/x-ndjson` exports the same
/// records as CSV or JSON Lines (the next page's cursor then comes in a `Link` header).
#[utoipa::path(
    tag = "audit",
    operation_id = "audit_list_events",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of sealed records", body = AuditListResponse,
            content(
                (AuditListResponse = "application/json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the auditor role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A cursor that is not this gateway's, not yours, or not for these filters (rule cursor_valid)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/v1/audit/events")]
pub async fn events(
    req: HttpRequest,
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let auditor = caller.require_any(&[Role::Auditor])?;
    let format = format_of(&req);
    let (default, page_max) = if format == Format::Json {
        (100, 500)
    } else {
        (1000, 10_000)
    };
    let limit = query.limit.unwrap_or(default);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::Malformed {
            detail: "limit must be 1 to 10000".to_owned(),
            errors: Vec::new(),
        });
    }
    // A JSON page holds at most 500 records; a larger limit gets 500 and a next cursor.
    let limit = limit.min(page_max);
    let filter = AuditFilter {
        organisation: query.organisation.map(|o| o.to_string()),
        actor: query.actor.clone(),
        action: query.action.clone(),
        from: query.from,
        to: query.to,
    };
    let bound_to = sha256_hex(format!("{filter:?}").as_bytes());
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            state
                .page_tokens
                .open(c, "audit", &auditor.subject, &bound_to)
        })
        .transpose()?;
    let audit = state.services.audit.clone();
    let search = filter.clone();
    let records = web::block(move || audit.sealed_records(&search, after, limit)).await??;
    let next_cursor = (records.len() as i64 == limit)
        .then(|| records.last().and_then(|r| r.event.position))
        .flatten()
        .map(|p| {
            state
                .page_tokens
                .issue("audit", &auditor.subject, &bound_to, p)
        });
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if let (Some(cursor), true) = (&next_cursor, format != Format::Json) {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        let pairs = [
            ("organisation", query.organisation.map(|o| o.to_string())),
            ("actor", query.actor.clone()),
            ("action", query.action.clone()),
            ("from", query.from.map(|t| t.to_rfc3339())),
            ("to", query.to.map(|t| t.to_rfc3339())),
            ("limit", Some(limit.to_string())),
            ("cursor", Some(cursor.clone())),
        ];
        for (key, value) in pairs {
            if let Some(value) = value {
                next.append_pair(key, &value);
            }
        }
        if let Ok(link) = HeaderValue::from_str(&format!(
            "</v1/audit/events?{}>; rel=\"next\"",
            next.finish()
        )) {
            response.insert_header((header::LINK, link));
        }
    }
    Ok(match format {
        Format::Json => response.json(AuditListResponse {
            items: records.into_iter().map(AuditEventResponse::from).collect(),
            next_cursor,
        }),
        Format::Csv => {
            let mut body = String::from(CSV_HEADER);
            records.iter().for_each(|r| body.push_str(&csv_row(r)));
            response
                .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"audit.csv\"",
                ))
                .body(body)
        }
        Format::JsonLines => {
            let mut body = String::new();
            for record in records {
                body.push_str(
                    &serde_json::to_string(&AuditEventResponse::from(record)).unwrap_or_default(),
                );
                body.push('\n');
            }
            response
                .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
                .body(body)
        }
    })
}

/// The latest signed checkpoint of the trail (auditors): keep one, and a later consistency
/// proof shows the trail was only appended to since.
#[utoipa::path(
    tag = "audit",
    operation_id = "audit_latest_checkpoint",
    responses(
        (status = 200, description = "The latest checkpoint", body = CheckpointResponse),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the auditor role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No checkpoint signed yet", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/v1/audit/checkpoints/latest")]
pub async fn latest_checkpoint(
    caller: ReviewerCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_any(&[Role::Auditor])?;
    let audit = state.services.audit.clone();
    let latest = web::block(move || audit.checkpoints())
        .await??
        .into_iter()
        .last()
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CheckpointResponse::from(latest)))
}

/// Prove that a record is in the tree of a given size (RFC 9162 inclusion proof; auditors).
#[utoipa::path(
    tag = "audit",
    operation_id = "audit_inclusion_proof",
    params(InclusionQuery),
    responses(
        (status = 200, description = "The proof", body = InclusionProofResponse),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the auditor role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Position or tree size outside the sealed trail", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/v1/audit/proofs/inclusion")]
pub async fn inclusion(
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    query: web::Query<InclusionQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_any(&[Role::Auditor])?;
    let services = state.services.clone();
    let (position, size) = (query.position, query.tree_size);
    let proof = web::block(move || services.inclusion_proof(position, size)).await??;
    Ok(HttpResponse::Ok().json(InclusionProofResponse {
        position: proof.position,
        tree_size: proof.tree_size,
        leaf_hash: hex(&proof.leaf_hash),
        audit_path: proof.path.iter().map(|h| hex(h)).collect(),
        root_hash: hex(&proof.root),
    }))
}

/// Prove that the tree of `to` records extends the tree of `from` records (RFC 9162
/// consistency proof; auditors).
#[utoipa::path(
    tag = "audit",
    operation_id = "audit_consistency_proof",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProofResponse),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the auditor role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Sizes outside the sealed trail", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/v1/audit/proofs/consistency")]
pub async fn consistency(
    caller: ReviewerCaller,
    state: web::Data<AppState>,
    query: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_any(&[Role::Auditor])?;
    let services = state.services.clone();
    let (from, to) = (query.from, query.to);
    let proof = web::block(move || services.consistency_proof(from, to)).await??;
    Ok(HttpResponse::Ok().json(ConsistencyProofResponse {
        from: proof.from,
        to: proof.to,
        from_root: hex(&proof.from_root),
        to_root: hex(&proof.to_root),
        proof: proof.path.iter().map(|h| hex(h)).collect(),
    }))
}

pub(crate) fn verify_response(report: &VerifyReport) -> VerifyResponse {
    VerifyResponse {
        intact: report.intact(),
        checked: report.checked,
        root_hash: hex(&report.head.root),
        chain_hash: hex(&report.head.chain_hash),
        checkpoints_matched: report.checkpoints_matched.clone(),
        first_bad: report.first_bad.as_ref().map(|b| BadRecordResponse {
            position: b.position,
            reason: b.reason.clone(),
        }),
    }
}

/// Verify the whole trail (auditors): every chain hash, contiguous positions, and the Merkle
/// root at every stored checkpoint. Reports intact, or the first bad record.
#[utoipa::path(
    tag = "audit",
    operation_id = "audit_verify",
    responses(
        (status = 200, description = "What verification found (intact or not)", body = VerifyResponse),
        (status = 401, description = "No session and no valid identity-provider token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs the auditor role", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database or identity provider unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("reviewer_session" = []), ("reviewer_oidc" = []))
)]
#[get("/v1/audit/verify")]
pub async fn verify(
    caller: ReviewerCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_any(&[Role::Auditor])?;
    let services = state.services.clone();
    let ring = state.audit_keys.clone();
    let report = web::block(move || {
        let verifier = crate::audit_log::stored_keys_verifier(&services, &ring)?;
        services
            .verify_trail(None, &verifier)
            .map_err(ApiError::from)
    })
    .await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(verify_response(&report)))
}

/// Every public key that ever signed an audit checkpoint (a JWKS), also after it stopped
/// signing tokens, so old checkpoints stay verifiable.
#[utoipa::path(
    tag = "audit",
    operation_id = "audit_keys",
    responses(
        (status = 200, description = "The key set", body = crate::dto::JwksResponse),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[get("/.well-known/audit-keys.json")]
pub async fn keys(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let audit = state.services.audit.clone();
    let keys = web::block(move || audit.audit_keys()).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "keys": state.audit_keys.trusted(keys)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_never_run_as_formulas() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }
}
