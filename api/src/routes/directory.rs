//! The national directory: the publisher's ingest, and partners' address-book sync (a snapshot
//! of their view, then the change feed), as JSON or as CSV for Exchange's bulk contact import.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{get, post, web, HttpMessage, HttpRequest, HttpResponse};
use gateway_domain::audit::Disclosure;
use gateway_domain::directory::{AddressBookView, EntryId, FeedItem, OperationForm};
use gateway_domain::services::directory::{IdempotencyKey, SyncPage, SyncPosition};
use gateway_domain::services::Context;
use gateway_domain::{Actor, Scope};

use crate::credentials::sha256_hex;
use crate::dto::{
    AddressBookPage, AddressBookQuery, DirectoryChangesRequest, DirectoryChangesResponse,
    PartnerEntry, SyncItem,
};
use crate::error::{ApiError, Problem};
use crate::extract::{parse_json, PartnerCaller, PublisherCaller, RequestId};
use crate::state::AppState;

/// The largest batch body the publisher may send (10,000 whole entries with room to spare).
pub const CHANGES_BODY_LIMIT: usize = 32 * 1024 * 1024;

const DEFAULT_LIMIT: i64 = 1_000;
const MAX_LIMIT: i64 = 5_000;
const CURSOR_KIND: &str = "address_book";

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::Validation(gateway_domain::ValidationErrors(
            vec![gateway_domain::FieldError::new(
                "Idempotency-Key",
                "idempotency_key",
                "must be 1 to 255 visible ASCII characters",
            )],
        )));
    }
    Ok(Some(key.to_owned()))
}

/// Publish a batch of directory changes (the internal publisher, `directory:write`).
///
/// Up to 10,000 operations, applied all or nothing and in order: `upsert` creates or replaces
/// a whole entry (a deleted one comes back), `delete` removes one (deleting an absent entry
/// changes nothing). An invalid batch is refused whole, every bad operation named by index and
/// field. With an `Idempotency-Key` (1 to 255 visible ASCII characters), a retry of the same
/// body returns the first answer and changes nothing; the same key with another body is
/// refused. Changes reach partners' feeds once they have a position, a moment after commit.
#[utoipa::path(
    tag = "directory",
    operation_id = "directory_publish_changes",
    request_body = DirectoryChangesRequest,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Makes a retried batch a no-op that returns the first answer")),
    responses(
        (status = 200, description = "The batch is committed", body = DirectoryChangesResponse),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the publisher, or no directory:write scope", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Broken rules, named by operations[i] and field; or an Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("partner_oauth" = ["directory:write"]))
)]
#[post("/v1/directory/changes")]
pub async fn publish(
    req: HttpRequest,
    caller: PublisherCaller,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::DirectoryWrite)?;
    let is_json = req
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|m| m.type_() == "application" && m.subtype() == "json");
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json".to_owned(),
        ));
    }
    let body = crate::extract::read_limited(payload, CHANGES_BODY_LIMIT).await?;
    let key = idempotency_key(&req)?.map(|key| IdempotencyKey {
        scope: format!("directory.changes:{}", caller.client_id),
        key,
        request_sha256: sha256_hex(&body),
    });
    let ctx = Context {
        actor: Actor::Publisher(caller.client_id.clone()),
        request_id: RequestId::of(&req),
    };
    let directory = state.directory.clone();
    let published = web::block(move || {
        let request: DirectoryChangesRequest = parse_json(&body)?;
        let forms: Vec<OperationForm> = request.operations.into_iter().map(Into::into).collect();
        directory
            .publish(&ctx, &forms, key.as_ref())
            .map_err(ApiError::from)
    })
    .await??;
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if published.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(published.answer))
}

/// What a cursor is bound to: the agreement and exactly the view it grants.
fn view_binding(agreement: gateway_domain::AgreementId, view: &AddressBookView) -> String {
    sha256_hex(format!("{agreement};{}", view.fingerprint()).as_bytes())
}

fn cursor_of(state: &AppState, caller: &str, binding: &str, position: SyncPosition) -> String {
    match position {
        SyncPosition::Snapshot { head, after } => state.page_tokens.issue_after(
            CURSOR_KIND,
            caller,
            binding,
            head,
            Some(&after.to_string()),
        ),
        SyncPosition::Feed { after } => {
            state
                .page_tokens
                .issue_after(CURSOR_KIND, caller, binding, after, None)
        }
        SyncPosition::Start => String::new(),
    }
}

fn open_cursor(
    state: &AppState,
    token: &str,
    caller: &str,
    binding: &str,
) -> Result<SyncPosition, ApiError> {
    let opened = state
        .page_tokens
        .open_any_query(token, CURSOR_KIND, caller)?;
    if opened.query != binding {
        return Err(ApiError::Gone(
            "your agreement's view changed since this cursor was issued (other organisations or attributes, or a new agreement): discard your copy and start again without a cursor",
        ));
    }
    Ok(match opened.after {
        Some(after) => SyncPosition::Snapshot {
            head: opened.position,
            after: EntryId::parse(&after).map_err(|_| {
                ApiError::Validation(gateway_domain::ValidationErrors(vec![
                    gateway_domain::FieldError::new(
                        "cursor",
                        "cursor_valid",
                        "not a cursor this gateway issued; start again without a cursor",
                    ),
                ]))
            })?,
        },
        None => SyncPosition::Feed {
            after: opened.position,
        },
    })
}

/// The Exchange bulk mail-contact columns (`New-MailContact` / `Set-Contact`), then ours.
const CSV_HEADER: &str =
    "ExternalEmailAddress,Name,FirstName,LastName,DisplayName,Title,Department,Company,Phone,MobilePhone,Op,Id\r\n";

fn csv_page(items: Vec<SyncItem>) -> String {
    use crate::routes::audit::{csv_cell, csv_quoted};
    let mut body = String::with_capacity(64 + items.len() * 160);
    body.push_str(CSV_HEADER);
    // Free text is neutralised against spreadsheet formulas; addresses, phone numbers and
    // ids (checked on ingest) go verbatim, so `+44 ...` stays a phone number in Exchange.
    let text = |value: Option<&str>| csv_cell(value.unwrap_or_default());
    let verbatim = |value: Option<&str>| csv_quoted(value.unwrap_or_default());
    for item in items {
        let cells: [String; 12] = match &item {
            SyncItem::Upsert { entry } => {
                let flat = |v: &Option<Option<String>>| v.clone().flatten();
                let e: &PartnerEntry = entry;
                [
                    verbatim(Some(&e.email)),
                    text(e.display_name.as_deref()),
                    text(flat(&e.given_name).as_deref()),
                    text(flat(&e.surname).as_deref()),
                    text(e.display_name.as_deref()),
                    text(flat(&e.job_title).as_deref()),
                    text(flat(&e.department).as_deref()),
                    text(e.organisation.as_ref().map(|o| o.name.as_str())),
                    verbatim(flat(&e.office_phone).as_deref()),
                    verbatim(flat(&e.mobile_phone).as_deref()),
                    "upsert".to_owned(),
                    verbatim(Some(&e.id)),
                ]
            }
            SyncItem::Delete { id, .. } => {
                let mut row: [String; 12] = Default::default();
                row[10] = "delete".to_owned();
                row[11] = verbatim(Some(id));
                row
            }
        };
        body.push_str(&cells.join(","));
        body.push_str("\r\n");
    }
    body
}

/// Sync your view of the national address book (`address_book:read`).
///
/// Without a cursor, a snapshot of your whole view begins, in pages in id order; its first
/// page says `reset: true` (discard any local copy). After the snapshot, the same cursor
/// follows the change feed from where the snapshot began. Items are `upsert` (store the entry,
/// replacing any copy with its id) or `delete` (remove the id; `reason` says why:
/// `deleted`, `left_scope` or `hidden`). Apply the pages in order and your copy converges to
/// exactly your view: entries of the organisations your agreement covers, never hidden ones,
/// with only the attributes it grants. Keep `next_cursor` and ask again later for new changes.
/// A page reads at most 50,000 entries or 100,000 feed positions, so a page of a view that
/// covers few organisations may hold fewer items than `limit`, even none, with `has_more`
/// true: keep following `next_cursor` while `has_more` is true.
///
/// Your grant is checked on every request. A cursor whose changes are no longer kept (older
/// than the retention, 180 days by default) or from before your view changed answers 410
/// `resync-required`. `Accept: text/csv` answers the same page as CSV with Exchange's bulk
/// mail-contact columns plus `Op` and `Id`; the next cursor then comes in a `Link` header
/// and `Sync-Has-More` / `Sync-Reset` headers. gzip is negotiated with `Accept-Encoding`.
/// Every page served is recorded as a disclosure in the audit trail.
#[utoipa::path(
    tag = "address_book",
    operation_id = "address_book_changes",
    params(AddressBookQuery),
    responses(
        (status = 200, description = "A page of your view", body = AddressBookPage,
            content(
                (AddressBookPage = "application/json"),
                (String = "text/csv"),
            )),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No address_book:read scope, or no agreement in force that grants it", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Resync from scratch: the cursor's changes were purged, or your view changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A cursor that is not this gateway's or not yours (rule cursor_valid)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many pages this minute for your organisation: wait Retry-After seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("partner_oauth" = ["address_book:read"]))
)]
#[get(
    "/v1/address-book/changes",
    wrap = "actix_web::middleware::Compress::default()"
)]
pub async fn changes(
    req: HttpRequest,
    caller: PartnerCaller,
    state: web::Data<AppState>,
    query: web::Query<AddressBookQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(gateway_domain::ValidationErrors(
            vec![gateway_domain::FieldError::new(
                "limit",
                "range",
                format!("must be 1 to {MAX_LIMIT}"),
            )],
        )));
    }
    // Before the grant's database read: a refused page costs nothing.
    state
        .page_limiter
        .check(caller.organisation, std::time::Instant::now())
        .map_err(|wait| ApiError::RateLimited {
            retry_after_seconds: crate::rate_limit::retry_after_seconds(wait),
        })?;
    let grant = caller.granted(&state, Scope::AddressBookRead).await?;
    let scope = grant.address_book.as_ref().ok_or(ApiError::GrantInactive)?;
    let view = AddressBookView::of(scope);
    let who = caller.organisation.to_string();
    let binding = view_binding(grant.agreement_id, &view);
    let position = match query.cursor.as_deref() {
        Some(token) => open_cursor(&state, token, &who, &binding)?,
        None => SyncPosition::Start,
    };
    let directory = state.directory.clone();
    let paged = view.clone();
    let page: SyncPage = web::block(move || directory.page(&paged, position, limit)).await??;

    let count = page.items.len() as u64;
    let (upserts, deletes) = page
        .items
        .iter()
        .fold((0u64, 0u64), |(u, d), item| match item {
            FeedItem::Upsert(_) => (u + 1, d),
            FeedItem::Delete { .. } => (u, d + 1),
        });
    let disclosure = Disclosure {
        organisation: caller.organisation,
        agreement: grant.agreement_id,
        key_id: None,
        request_id: RequestId::of(&req),
        what: "address_book.page",
        count,
        details: serde_json::json!({
            "snapshot": !matches!(position, SyncPosition::Feed { .. }),
            "reset": page.reset,
            "from_position": page.from,
            "to_position": page.to,
            "upserts": upserts,
            "deletes": deletes,
        }),
    };
    // Nothing is disclosed before the record of it is committed.
    state
        .recorder
        .record(disclosure.event(state.clock.now()))
        .await?;

    let next_cursor = cursor_of(&state, &who, &binding, page.next);
    let items: Vec<SyncItem> = page
        .items
        .into_iter()
        .map(|item| SyncItem::of(&view, item))
        .collect();
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    // CSV when it is the most preferred type (q-values honoured; `text/csv;q=0` is a no).
    let csv = req
        .get_header::<header::Accept>()
        .is_some_and(|accept| accept.preference().essence_str() == "text/csv");
    if !csv {
        return Ok(response.json(AddressBookPage {
            items,
            next_cursor,
            has_more: page.has_more,
            reset: page.reset,
        }));
    }
    let mut next = url::form_urlencoded::Serializer::new(String::new());
    next.append_pair("limit", &limit.to_string());
    next.append_pair("cursor", &next_cursor);
    if let Ok(link) = HeaderValue::from_str(&format!(
        "</v1/address-book/changes?{}>; rel=\"next\"",
        next.finish()
    )) {
        response.insert_header((header::LINK, link));
    }
    Ok(response
        .insert_header(("Sync-Has-More", page.has_more.to_string()))
        .insert_header(("Sync-Reset", page.reset.to_string()))
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"address-book.csv\"",
        ))
        .body(csv_page(items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_neutralises_free_text_but_keeps_addresses_and_phones_verbatim() {
        let entry = PartnerEntry {
            id: "6f1c2a7e-0000-4000-8000-000000000001".into(),
            email: "-dash@nhs.net".into(),
            display_name: Some("=HYPERLINK(\"x\")".into()),
            given_name: Some(Some("Ada, Countess".into())),
            surname: Some(None),
            job_title: None,
            department: Some(Some("+Cardiology".into())),
            organisation: None,
            office_phone: Some(Some("+44 113 243 3144".into())),
            mobile_phone: Some(None),
        };
        let csv = csv_page(vec![SyncItem::Upsert { entry }]);
        let row = csv.split("\r\n").nth(1).unwrap();
        assert_eq!(
            row,
            "-dash@nhs.net,\"'=HYPERLINK(\"\"x\"\")\",\"Ada, Countess\",,\"'=HYPERLINK(\"\"x\"\")\",,'+Cardiology,,+44 113 243 3144,,upsert,6f1c2a7e-0000-4000-8000-000000000001"
        );
    }
}
