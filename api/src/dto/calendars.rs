//! Calendars on the wire: the publisher's busy blocks and working hours, the partners'
//! free/busy queries and answers.

use chrono::{DateTime, SecondsFormat, Utc};
use gateway_domain::calendar::{
    weekday_name, BlockForm, BusyBlock, FreeBusyForm, WorkingHours, WorkingHoursForm,
    DEFAULT_INTERVAL_MINUTES, MAX_BLOCKS, MAX_INTERVAL_MINUTES, MAX_SCHEDULES,
    MIN_INTERVAL_MINUTES,
};
use gateway_domain::services::calendars::{MailboxError, ScheduleAnswer, WorkingTime};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::values::{EmailAddressSchema, ShortTextSchema};

/// How a block shows: `busy`, `tentative`, `oof` (out of office) or `working_elsewhere`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = BusyStatus)]
pub enum BusyStatusDto {
    Busy,
    Tentative,
    Oof,
    WorkingElsewhere,
}

/// One stretch of a calendar, as the publisher sends it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "start": "2027-03-01T09:00:00Z", "end": "2027-03-01T10:00:00Z", "status": "busy",
    "subject": "Ward round", "location": "Ward 7", "private": false
}))]
pub struct BusyBlockBody {
    /// RFC 3339 with an offset; must lie in `[from, to)` of the request.
    #[schema(format = DateTime)]
    pub start: String,
    /// RFC 3339 with an offset; after `start`, at most 400 days later.
    #[schema(format = DateTime)]
    pub end: String,
    #[schema(value_type = BusyStatusDto)]
    pub status: String,
    /// Shown only to agreements granted `limited_details`, and never when `private`.
    #[schema(value_type = Option<ShortTextSchema>)]
    pub subject: Option<String>,
    /// As `subject`.
    #[schema(value_type = Option<ShortTextSchema>)]
    pub location: Option<String>,
    /// A private block shows as busy time only, whatever the agreement grants.
    #[serde(default)]
    pub private: bool,
}

impl BusyBlockBody {
    pub fn form(&self) -> BlockForm {
        BlockForm {
            start: self.start.clone(),
            end: self.end.clone(),
            status: self.status.clone(),
            subject: self.subject.clone(),
            location: self.location.clone(),
            private: self.private,
        }
    }
}

/// The blocks of one mailbox within the request's range: they replace every block that
/// started in it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"blocks": [
    {"start": "2027-03-01T09:00:00Z", "end": "2027-03-01T10:00:00Z", "status": "busy", "subject": "Ward round", "location": "Ward 7", "private": false},
    {"start": "2027-03-01T13:00:00Z", "end": "2027-03-01T17:00:00Z", "status": "oof"}
]}))]
pub struct BusyBlocksBody {
    /// At most 5000; an empty list clears the range.
    #[schema(max_items = 5000)]
    pub blocks: Vec<BusyBlockBody>,
}

const _: () = assert!(MAX_BLOCKS == 5000);

/// The range a replace covers.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplaceRangeQuery {
    /// RFC 3339 with an offset: the range starts here (included).
    #[param(format = DateTime)]
    pub from: String,
    /// RFC 3339 with an offset: the range ends here (excluded); at most 400 days after `from`.
    #[param(format = DateTime)]
    pub to: String,
}

/// What a replace did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplacedBlocks {
    /// Blocks that started in the range before.
    pub removed: u64,
    /// Blocks the range holds now.
    pub stored: u64,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Weekday)]
pub enum WeekdayDto {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// When a mailbox's owner works, in their own time zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "time_zone": "Europe/London",
    "days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
    "start": "09:00", "end": "17:30"
}))]
pub struct WorkingHoursBody {
    /// An IANA time zone name, e.g. `Europe/London`.
    #[schema(min_length = 1, max_length = 64, example = "Europe/London")]
    pub time_zone: String,
    /// 1 to 7 days; repeats are folded.
    #[schema(value_type = Vec<WeekdayDto>, min_items = 1, max_items = 7)]
    pub days: Vec<String>,
    /// Local time of day, `HH:MM` (24-hour).
    #[schema(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "09:00")]
    pub start: String,
    /// Local time of day, `HH:MM`, after `start`.
    #[schema(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "17:30")]
    pub end: String,
}

impl WorkingHoursBody {
    pub fn form(&self) -> WorkingHoursForm {
        WorkingHoursForm {
            time_zone: self.time_zone.clone(),
            days: self.days.clone(),
            start: self.start.clone(),
            end: self.end.clone(),
        }
    }

    pub fn of(hours: &WorkingHours) -> Self {
        Self {
            time_zone: hours.time_zone.name().to_owned(),
            days: hours
                .days
                .iter()
                .map(|d| weekday_name(*d).to_owned())
                .collect(),
            start: hours.start.format("%H:%M").to_string(),
            end: hours.end.format("%H:%M").to_string(),
        }
    }
}

/// `merged` answers the availability view only; `detailed` adds the items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FreeBusyViewKind)]
pub enum FreeBusyViewDto {
    Merged,
    #[default]
    Detailed,
}

/// A free/busy query.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "schedules": ["ada.lovelace@nhs.net", "mary.seacole@nhs.net"],
    "start": "2027-03-01T08:00:00Z", "end": "2027-03-01T18:00:00Z",
    "interval_minutes": 30, "view": "detailed"
}))]
pub struct FreeBusyRequest {
    /// 1 to 100 mailbox addresses; repeats (in any case) are folded, the first kept.
    #[schema(value_type = Vec<EmailAddressSchema>, min_items = 1, max_items = 100)]
    pub schedules: Vec<String>,
    /// RFC 3339 with an offset.
    #[schema(format = DateTime)]
    pub start: String,
    /// RFC 3339 with an offset; after `start`, at most 42 days later.
    #[schema(format = DateTime)]
    pub end: String,
    /// 5 to 1440; 30 when left out.
    #[schema(minimum = 5, maximum = 1440, default = 30)]
    #[serde(default, deserialize_with = "super::values::optional_whole_number")]
    pub interval_minutes: Option<i64>,
    #[serde(default)]
    pub view: FreeBusyViewDto,
}

const _: () = assert!(
    MAX_SCHEDULES == 100
        && MIN_INTERVAL_MINUTES == 5
        && MAX_INTERVAL_MINUTES == 1440
        && DEFAULT_INTERVAL_MINUTES == 30
);

impl FreeBusyRequest {
    pub fn form(&self) -> FreeBusyForm {
        FreeBusyForm {
            schedules: self.schedules.clone(),
            start: self.start.clone(),
            end: self.end.clone(),
            interval_minutes: self.interval_minutes,
        }
    }
}

/// The instant as answers write it (RFC 3339, UTC).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A busy item overlapping the window, whole.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FreeBusyItem {
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(format = DateTime)]
    pub end: String,
    pub status: BusyStatusDto,
    /// Only for `limited_details` agreements, never for private items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

fn status_dto(status: gateway_domain::calendar::BusyStatus) -> BusyStatusDto {
    use gateway_domain::calendar::BusyStatus as S;
    match status {
        S::Busy => BusyStatusDto::Busy,
        S::Tentative => BusyStatusDto::Tentative,
        S::Oof => BusyStatusDto::Oof,
        S::WorkingElsewhere => BusyStatusDto::WorkingElsewhere,
    }
}

impl FreeBusyItem {
    fn of(block: &BusyBlock) -> Self {
        Self {
            start: rfc3339(block.start),
            end: rfc3339(block.end),
            status: status_dto(block.status),
            subject: block.subject.clone(),
            location: block.location.clone(),
        }
    }
}

/// A stretch of working time inside the window (UTC).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkingPeriod {
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(format = DateTime)]
    pub end: String,
}

/// A mailbox's working hours, and the periods they make inside the window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkingHoursAnswer {
    pub time_zone: String,
    #[schema(value_type = Vec<WeekdayDto>)]
    pub days: Vec<String>,
    /// Local `HH:MM`.
    pub start: String,
    pub end: String,
    /// The working periods overlapping the window, in UTC, clipped to it (daylight-saving
    /// changes applied).
    pub periods: Vec<WorkingPeriod>,
}

impl WorkingHoursAnswer {
    fn of(time: &WorkingTime) -> Self {
        let hours = WorkingHoursBody::of(&time.hours);
        Self {
            time_zone: hours.time_zone,
            days: hours.days,
            start: hours.start,
            end: hours.end,
            periods: time
                .periods
                .iter()
                .map(|(start, end)| WorkingPeriod {
                    start: rfc3339(*start),
                    end: rfc3339(*end),
                })
                .collect(),
        }
    }
}

/// Why a mailbox has no answer.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FreeBusyErrorCode)]
pub enum FreeBusyErrorCode {
    /// No mailbox with this address that the agreement covers (unknown, outside its
    /// organisations, or hidden from the address book: the same answer for each).
    MailboxNotFound,
}

/// A per-mailbox error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FreeBusyError {
    pub code: FreeBusyErrorCode,
    pub message: String,
}

/// One asked mailbox's answer, in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleDto {
    /// As asked.
    pub address: String,
    /// One digit per interval of the window: 0 free, 1 tentative, 2 busy, 3 out of office,
    /// 4 working elsewhere; where items overlap, out of office beats busy, busy beats
    /// tentative, tentative beats working elsewhere. The last interval is shorter when the
    /// window is not whole intervals. Empty with an `error`.
    #[schema(pattern = "^[0-4]*$")]
    pub availability_view: String,
    /// The items overlapping the window, whole, by start (`view=detailed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<FreeBusyItem>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<WorkingHoursAnswer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FreeBusyError>,
}

impl ScheduleDto {
    pub fn of(answer: &ScheduleAnswer, view: FreeBusyViewDto) -> Self {
        let address = answer.address.as_str().to_owned();
        match &answer.answer {
            Ok(availability) => Self {
                address,
                availability_view: availability.view.clone(),
                items: (view == FreeBusyViewDto::Detailed)
                    .then(|| availability.items.iter().map(FreeBusyItem::of).collect()),
                working_hours: availability
                    .working_time
                    .as_ref()
                    .map(WorkingHoursAnswer::of),
                error: None,
            },
            Err(MailboxError::NotFound) => Self {
                address,
                availability_view: String::new(),
                items: None,
                working_hours: None,
                error: Some(FreeBusyError {
                    code: FreeBusyErrorCode::MailboxNotFound,
                    message: "no mailbox with this address is covered by the agreement".into(),
                }),
            },
        }
    }
}

/// The free/busy answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FreeBusyResponse {
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(format = DateTime)]
    pub end: String,
    pub interval_minutes: i64,
    pub schedules: Vec<ScheduleDto>,
}
