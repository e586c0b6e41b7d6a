//! Calendars: the publisher's busy blocks and working hours, and partners' free/busy queries,
//! answered as JSON or as iCalendar (RFC 5545).

use actix_web::http::header;
use actix_web::{post, put, web, HttpMessage, HttpRequest, HttpResponse};
use gateway_domain::audit::Disclosure;
use gateway_domain::calendar::{BlockForm, FreeBusyQuery};
use gateway_domain::services::calendars::ScheduleAnswer;
use gateway_domain::Scope;

use crate::dto::{
    rfc3339, BusyBlocksBody, FreeBusyRequest, FreeBusyResponse, ReplaceRangeQuery, ReplacedBlocks,
    ScheduleDto, WorkingHoursBody,
};
use crate::error::{ApiError, Problem};
use crate::extract::{parse_json, JsonBody, PartnerCaller, PublisherCaller, RequestId};
use crate::state::AppState;

/// The largest replace body (5,000 blocks with subjects and locations, with room to spare).
pub const BUSY_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Replace a mailbox's busy blocks in a range (the internal publisher, `calendar:write`).
///
/// Every block of the mailbox whose start lies in `[from, to)` is replaced, in one
/// transaction, by the blocks sent (at most 5,000, each starting inside the range; an empty
/// list clears it): sending the same request again changes nothing more. The mailbox is a
/// directory entry's email, matched without regard to case; its calendar follows the entry.
#[utoipa::path(
    tag = "calendars",
    operation_id = "calendar_replace_busy",
    params(("mailbox" = String, Path, description = "The mailbox: a directory entry's email address"), ReplaceRangeQuery),
    request_body = BusyBlocksBody,
    responses(
        (status = 200, description = "The range now holds exactly the blocks sent", body = ReplacedBlocks),
        (status = 400, description = "Malformed body or query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the publisher, or no calendar:write scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No directory entry has this email", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Broken rules, named by field (`from`, `to`, `blocks[i].start`, ...)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("partner_oauth" = ["calendar:write"]))
)]
#[put("/v1/calendars/{mailbox}/busy")]
pub async fn replace_busy(
    req: HttpRequest,
    caller: PublisherCaller,
    state: web::Data<AppState>,
    mailbox: web::Path<String>,
    range: web::Query<ReplaceRangeQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::CalendarWrite)?;
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
    let body = crate::extract::read_limited(payload, BUSY_BODY_LIMIT).await?;
    let calendars = state.calendars.clone();
    let range = range.into_inner();
    let replaced = web::block(move || {
        let request: BusyBlocksBody = parse_json(&body)?;
        let forms: Vec<BlockForm> = request.blocks.iter().map(|b| b.form()).collect();
        calendars
            .replace(&mailbox, &range.from, &range.to, &forms)
            .map_err(ApiError::from)
    })
    .await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ReplacedBlocks {
            removed: replaced.removed as u64,
            stored: replaced.stored as u64,
        }))
}

/// Set a mailbox's working hours (the internal publisher, `calendar:write`).
///
/// An IANA time zone, the days, and the local start and end time of day; free/busy answers
/// turn them into UTC periods with the zone's daylight-saving rules.
#[utoipa::path(
    tag = "calendars",
    operation_id = "calendar_set_working_hours",
    params(("mailbox" = String, Path, description = "The mailbox: a directory entry's email address")),
    request_body = WorkingHoursBody,
    responses(
        (status = 200, description = "The working hours as stored", body = WorkingHoursBody),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the publisher, or no calendar:write scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No directory entry has this email", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown time zone or day, or an end not after the start", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("partner_oauth" = ["calendar:write"]))
)]
#[put("/v1/calendars/{mailbox}/working-hours")]
pub async fn set_working_hours(
    caller: PublisherCaller,
    state: web::Data<AppState>,
    mailbox: web::Path<String>,
    body: JsonBody<WorkingHoursBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::CalendarWrite)?;
    let calendars = state.calendars.clone();
    let form = body.0.form();
    let hours = web::block(move || calendars.set_working_hours(&mailbox, &form)).await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WorkingHoursBody::of(&hours)))
}

/// Free/busy of up to 100 mailboxes (partners, `free_busy:read`).
///
/// Per mailbox, in request order: the availability view (one digit per interval), the items
/// overlapping the window (`view=detailed`; start, end and status, plus subject and location
/// when the agreement grants `limited_details` and the item is not private) and the working
/// hours, or an error. A mailbox the agreement does not cover, one hidden from the address
/// book and one that does not exist get the same answer. The grant is checked on every
/// request, and every answer is recorded as a disclosure in the audit trail before it is
/// sent. With `Accept: text/calendar` the answer is an iCalendar VCALENDAR with one
/// VFREEBUSY per mailbox (busy `BUSY`, tentative `BUSY-TENTATIVE`, out of office
/// `BUSY-UNAVAILABLE`; working elsewhere is free time; an unknown mailbox gets
/// `REQUEST-STATUS:3.7;Invalid calendar user`).
#[utoipa::path(
    tag = "free-busy",
    operation_id = "free_busy_query",
    request_body = FreeBusyRequest,
    responses(
        (status = 200, description = "One answer per mailbox", content(
            (FreeBusyResponse = "application/json"),
            (String = "text/calendar"),
        )),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No free_busy:read scope, or no approved agreement in force", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A limit broken (schedules 1 to 100, window at most 42 days, interval 5 to 1440), named by field", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many queries for this organisation; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("partner_oauth" = ["free_busy:read"]))
)]
#[post("/v1/free-busy")]
pub async fn free_busy(
    req: HttpRequest,
    caller: PartnerCaller,
    state: web::Data<AppState>,
    body: JsonBody<FreeBusyRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.0;
    // Before the grant's database read: a refused query costs nothing.
    state
        .free_busy_limiter
        .check(caller.organisation, std::time::Instant::now())
        .map_err(|wait| ApiError::RateLimited {
            retry_after_seconds: crate::rate_limit::retry_after_seconds(wait),
        })?;
    let grant = caller.granted(&state, Scope::FreeBusyRead).await?;
    let scope = grant.free_busy.clone().ok_or(ApiError::GrantInactive)?;
    let query = FreeBusyQuery::parse(&request.form()).map_err(ApiError::Validation)?;
    let calendars = state.calendars.clone();
    let asked = query.clone();
    let answers: Vec<ScheduleAnswer> =
        web::block(move || calendars.free_busy(&scope, &asked)).await??;

    let answered: Vec<&str> = answers
        .iter()
        .filter(|a| a.answer.is_ok())
        .map(|a| a.address.as_str())
        .collect();
    let disclosure = Disclosure {
        organisation: caller.organisation,
        agreement: grant.agreement_id,
        key_id: None,
        request_id: RequestId::of(&req),
        what: "free_busy.answer",
        count: answered.len() as u64,
        details: serde_json::json!({
            "mailboxes": answered,
            "asked": answers.len(),
            "start": rfc3339(query.window.start),
            "end": rfc3339(query.window.end),
            "interval_minutes": query.window.interval_minutes,
            "view": request.view,
        }),
    };
    // Nothing is disclosed before the record of it is committed.
    state
        .recorder
        .record(disclosure.event(state.clock.now()))
        .await?;

    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    // iCalendar when it is the most preferred type (q-values honoured).
    let ical = req
        .get_header::<header::Accept>()
        .is_some_and(|accept| accept.preference().essence_str() == "text/calendar");
    if ical {
        let calendar = crate::icalendar::free_busy(&query.window, &answers, state.clock.now());
        return Ok(response
            .insert_header((header::CONTENT_TYPE, "text/calendar; charset=utf-8"))
            .body(calendar));
    }
    Ok(response.json(FreeBusyResponse {
        start: rfc3339(query.window.start),
        end: rfc3339(query.window.end),
        interval_minutes: query.window.interval_minutes,
        schedules: answers
            .iter()
            .map(|a| ScheduleDto::of(a, request.view))
            .collect(),
    }))
}
