//! Calendars as the gateway federates them: busy blocks and working hours as the publisher
//! sends them, the free/busy query's limits, and the availability view Exchange partners know.
//!
//! The availability view has one digit per interval of the window (`0` free, `1` tentative,
//! `2` busy, `3` out of office, `4` working elsewhere). An interval shows the strongest status
//! of the blocks overlapping it, by [`BusyStatus::precedence`]: out of office over busy over
//! tentative over working elsewhere over free. A block overlaps an interval when it starts
//! before the interval ends and ends after the interval starts (touching is not
//! overlapping). The last interval may be shorter than the others when the window is not a
//! whole number of intervals; it is still one digit.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};

use crate::evidence::string_enum;
use crate::text::bounded_text;
use crate::validation::{FieldError, RuleViolation, ValidationErrors};

/// The most blocks one replace may carry.
pub const MAX_BLOCKS: usize = 5_000;
/// The longest range one replace may cover, and the longest block.
pub const MAX_RANGE_DAYS: i64 = 400;
/// The most mailboxes one free/busy query may name (Exchange's own limit).
pub const MAX_SCHEDULES: usize = 100;
/// The longest free/busy window (Exchange's own limit).
pub const MAX_WINDOW_DAYS: i64 = 42;
pub const MIN_INTERVAL_MINUTES: i64 = 5;
pub const MAX_INTERVAL_MINUTES: i64 = 1440;
pub const DEFAULT_INTERVAL_MINUTES: i64 = 30;
const TEXT_MAX: usize = 200;

string_enum!(
    /// How a block shows in free/busy.
    BusyStatus {
        Busy = "busy",
        Tentative = "tentative",
        Oof = "oof",
        WorkingElsewhere = "working_elsewhere",
    }
);

impl BusyStatus {
    /// The block's digit in an availability view.
    pub fn digit(self) -> u8 {
        match self {
            Self::Tentative => 1,
            Self::Busy => 2,
            Self::Oof => 3,
            Self::WorkingElsewhere => 4,
        }
    }

    /// Which status an interval shows when blocks overlap: the highest (free is 0).
    pub fn precedence(self) -> u8 {
        match self {
            Self::WorkingElsewhere => 1,
            Self::Tentative => 2,
            Self::Busy => 3,
            Self::Oof => 4,
        }
    }
}

/// One stretch of a mailbox's calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyBlock {
    pub start: DateTime<Utc>,
    /// After `start`.
    pub end: DateTime<Utc>,
    pub status: BusyStatus,
    pub subject: Option<String>,
    pub location: Option<String>,
    /// Never shown in detail, whatever the agreement grants.
    pub private: bool,
}

/// A block as the publisher sends it, before its rules are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockForm {
    pub start: String,
    pub end: String,
    pub status: String,
    pub subject: Option<String>,
    pub location: Option<String>,
    pub private: bool,
}

/// An RFC 3339 instant with an offset (`2027-03-01T09:00:00Z`, `...+01:00`).
pub fn parse_instant(raw: &str) -> Result<DateTime<Utc>, RuleViolation> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            RuleViolation::new(
                "rfc3339",
                "must be an RFC 3339 date-time with an offset, e.g. 2027-03-01T09:00:00Z",
            )
        })
}

/// The `[from, to)` range a replace covers: the blocks whose start lies in it are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaceRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl ReplaceRange {
    pub fn parse(from: &str, to: &str) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let from = errors.check("from", parse_instant(from));
        let to = errors.check("to", parse_instant(to));
        if let (Some(from), Some(to)) = (from, to) {
            if to <= from {
                errors.push(FieldError::new("to", "after_from", "must be after from"));
            } else if to - from > Duration::days(MAX_RANGE_DAYS) {
                errors.push(FieldError::new(
                    "to",
                    "max_range",
                    format!("must be at most {MAX_RANGE_DAYS} days after from"),
                ));
            }
        }
        errors.finish(|| {
            Some(Self {
                from: from?,
                to: to?,
            })
        })
    }
}

fn optional_text(
    errors: &mut ValidationErrors,
    field: String,
    raw: &Option<String>,
) -> Option<String> {
    let raw = raw.as_deref()?;
    bounded_text(raw, 1, TEXT_MAX, false)
        .map_err(|e| errors.push(e.at(field)))
        .ok()
}

/// Checks a replace's blocks: each names a status, ends after it starts, starts inside
/// `range`, lasts at most [`MAX_RANGE_DAYS`]; every broken rule is named
/// `blocks[i].<field>`. Returns the blocks by start.
pub fn parse_blocks(
    range: &ReplaceRange,
    forms: &[BlockForm],
) -> Result<Vec<BusyBlock>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if forms.len() > MAX_BLOCKS {
        errors.push(FieldError::new(
            "blocks",
            "max_items",
            format!("must hold at most {MAX_BLOCKS} blocks"),
        ));
        return Err(errors);
    }
    let mut blocks = Vec::with_capacity(forms.len());
    for (i, form) in forms.iter().enumerate() {
        let at = |field: &str| format!("blocks[{i}].{field}");
        let start = errors.check(&at("start"), parse_instant(&form.start));
        let end = errors.check(&at("end"), parse_instant(&form.end));
        let status = errors.check(&at("status"), BusyStatus::parse(&form.status));
        let subject = optional_text(&mut errors, at("subject"), &form.subject);
        let location = optional_text(&mut errors, at("location"), &form.location);
        if let Some(start) = start {
            if start < range.from || start >= range.to {
                errors.push(FieldError::new(
                    at("start"),
                    "within_range",
                    "must lie in [from, to) of the request",
                ));
            }
        }
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                errors.push(FieldError::new(
                    at("end"),
                    "after_start",
                    "must be after start",
                ));
            } else if end - start > Duration::days(MAX_RANGE_DAYS) {
                errors.push(FieldError::new(
                    at("end"),
                    "max_duration",
                    format!("a block lasts at most {MAX_RANGE_DAYS} days"),
                ));
            }
        }
        if let (Some(start), Some(end), Some(status)) = (start, end, status) {
            blocks.push(BusyBlock {
                start,
                end,
                status,
                subject,
                location,
                private: form.private,
            });
        }
    }
    blocks.sort_by_key(|b| (b.start, b.end));
    errors.finish(|| Some(blocks))
}

/// When a mailbox's owner works, in their own time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    pub time_zone: chrono_tz::Tz,
    /// Monday first, without repeats, never empty.
    pub days: Vec<Weekday>,
    /// Local time of day; before `end`.
    pub start: NaiveTime,
    pub end: NaiveTime,
}

/// Working hours as the publisher sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkingHoursForm {
    pub time_zone: String,
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
}

const DAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("sunday", Weekday::Sun),
];

pub fn weekday_name(day: Weekday) -> &'static str {
    DAYS[day.num_days_from_monday() as usize].0
}

fn time_of_day(raw: &str) -> Result<NaiveTime, RuleViolation> {
    let raw = raw.trim();
    let valid = raw.len() == 5 && raw.as_bytes()[2] == b':';
    valid
        .then(|| NaiveTime::parse_from_str(raw, "%H:%M").ok())
        .flatten()
        .ok_or_else(|| {
            RuleViolation::new("time_of_day", "must be a time of day HH:MM, 00:00 to 23:59")
        })
}

impl WorkingHours {
    pub fn parse(form: &WorkingHoursForm) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let time_zone = form
            .time_zone
            .trim()
            .parse::<chrono_tz::Tz>()
            .map_err(|_| {
                errors.push(FieldError::new(
                    "time_zone",
                    "iana_time_zone",
                    "must be an IANA time zone name, e.g. Europe/London",
                ))
            })
            .ok();
        let mut days = Vec::new();
        if form.days.is_empty() {
            errors.push(FieldError::new(
                "days",
                "min_items",
                "must name at least one day",
            ));
        }
        for (i, raw) in form.days.iter().enumerate() {
            match DAYS.iter().find(|(name, _)| raw.trim().eq_ignore_ascii_case(name)) {
                Some((_, day)) => days.push(*day),
                None => errors.push(FieldError::new(
                    format!("days[{i}]"),
                    "one_of",
                    "must be one of: monday, tuesday, wednesday, thursday, friday, saturday, sunday",
                )),
            }
        }
        days.sort_by_key(|d| d.num_days_from_monday());
        days.dedup();
        let start = errors.check("start", time_of_day(&form.start));
        let end = errors.check("end", time_of_day(&form.end));
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                errors.push(FieldError::new("end", "after_start", "must be after start"));
            }
        }
        errors.finish(|| {
            Some(Self {
                time_zone: time_zone?,
                days,
                start: start?,
                end: end?,
            })
        })
    }

    /// The working periods overlapping `[from, to)`, as UTC instants clipped to it, by start.
    /// A local time that a daylight-saving change skips is read with the offset before the
    /// change (01:30 on the morning the clocks go forward in London is 01:30 UTC); one that
    /// happens twice is its first occurrence.
    pub fn periods(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut periods = Vec::new();
        if to <= from {
            return periods;
        }
        let first = from.with_timezone(&self.time_zone).date_naive() - Duration::days(1);
        let last = to.with_timezone(&self.time_zone).date_naive() + Duration::days(1);
        let mut day = first;
        while day <= last {
            if self.days.contains(&day.weekday()) {
                let start = self.instant(day, self.start);
                let end = self.instant(day, self.end);
                let (start, end) = (start.max(from), end.min(to));
                if start < end {
                    periods.push((start, end));
                }
            }
            day += Duration::days(1);
        }
        periods
    }

    fn instant(&self, day: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        let local = day.and_time(time);
        match self.time_zone.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            chrono::LocalResult::None => {
                // In a gap: the offset in force just before it applies.
                let before = self
                    .time_zone
                    .offset_from_utc_datetime(&(local - Duration::days(1)));
                let offset = chrono::Offset::fix(&before);
                (local - Duration::seconds(i64::from(offset.local_minus_utc()))).and_utc()
            }
        }
    }
}

/// The window of a free/busy query, cut into intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeBusyWindow {
    pub start: DateTime<Utc>,
    /// After `start`, at most [`MAX_WINDOW_DAYS`] later.
    pub end: DateTime<Utc>,
    pub interval_minutes: i64,
}

/// A free/busy query as a partner sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreeBusyForm {
    pub schedules: Vec<String>,
    pub start: String,
    pub end: String,
    pub interval_minutes: Option<i64>,
}

/// A checked free/busy query: the mailboxes in request order, case-insensitive repeats folded
/// (the first spelling kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeBusyQuery {
    pub schedules: Vec<crate::contact::EmailAddress>,
    pub window: FreeBusyWindow,
}

impl FreeBusyQuery {
    pub fn parse(form: &FreeBusyForm) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut schedules: Vec<crate::contact::EmailAddress> = Vec::new();
        if form.schedules.is_empty() {
            errors.push(FieldError::new(
                "schedules",
                "min_items",
                "must name at least one mailbox",
            ));
        }
        if form.schedules.len() > MAX_SCHEDULES {
            errors.push(FieldError::new(
                "schedules",
                "max_items",
                format!("must name at most {MAX_SCHEDULES} mailboxes"),
            ));
        } else {
            for (i, raw) in form.schedules.iter().enumerate() {
                match crate::contact::EmailAddress::parse(raw) {
                    Ok(address) => {
                        if !schedules
                            .iter()
                            .any(|s| s.as_str().eq_ignore_ascii_case(address.as_str()))
                        {
                            schedules.push(address);
                        }
                    }
                    Err(e) => errors.push(e.at(format!("schedules[{i}]"))),
                }
            }
        }
        let start = errors.check("start", parse_instant(&form.start));
        let end = errors.check("end", parse_instant(&form.end));
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                errors.push(FieldError::new("end", "after_start", "must be after start"));
            } else if end - start > Duration::days(MAX_WINDOW_DAYS) {
                errors.push(FieldError::new(
                    "end",
                    "max_window",
                    format!("must be at most {MAX_WINDOW_DAYS} days after start"),
                ));
            }
        }
        let interval_minutes = form.interval_minutes.unwrap_or(DEFAULT_INTERVAL_MINUTES);
        if !(MIN_INTERVAL_MINUTES..=MAX_INTERVAL_MINUTES).contains(&interval_minutes) {
            errors.push(FieldError::new(
                "interval_minutes",
                "range",
                format!("must be {MIN_INTERVAL_MINUTES} to {MAX_INTERVAL_MINUTES}"),
            ));
        }
        errors.finish(|| {
            Some(Self {
                schedules,
                window: FreeBusyWindow {
                    start: start?,
                    end: end?,
                    interval_minutes,
                },
            })
        })
    }
}

impl FreeBusyWindow {
    fn interval(&self) -> i64 {
        self.interval_minutes * 60_000_000
    }

    fn micros(&self, t: DateTime<Utc>) -> i64 {
        (t - self.start).num_microseconds().unwrap_or(i64::MAX)
    }

    /// How many digits the availability view has: the last interval may be short.
    pub fn intervals(&self) -> usize {
        let span = self.micros(self.end);
        usize::try_from((span + self.interval() - 1) / self.interval()).unwrap_or(0)
    }

    /// Whether `block` overlaps the window.
    pub fn overlaps(&self, block: &BusyBlock) -> bool {
        block.start < self.end && block.end > self.start
    }

    /// One digit per interval (see the module's documentation).
    pub fn availability_view(&self, blocks: &[BusyBlock]) -> String {
        let n = self.intervals();
        let mut best: Vec<Option<BusyStatus>> = vec![None; n];
        let iv = self.interval();
        for block in blocks.iter().filter(|b| self.overlaps(b)) {
            let first = self.micros(block.start).div_euclid(iv).max(0);
            let end = self.micros(block.end);
            let last = (end.div_euclid(iv) + i64::from(end.rem_euclid(iv) != 0)).min(n as i64);
            for slot in &mut best[first as usize..last as usize] {
                if slot.is_none_or(|s| s.precedence() < block.status.precedence()) {
                    *slot = Some(block.status);
                }
            }
        }
        best.into_iter()
            .map(|s| char::from(b'0' + s.map_or(0, BusyStatus::digit)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse_instant(s).unwrap()
    }

    fn block(start: &str, end: &str, status: BusyStatus) -> BusyBlock {
        BusyBlock {
            start: at(start),
            end: at(end),
            status,
            subject: None,
            location: None,
            private: false,
        }
    }

    fn window(start: &str, end: &str, minutes: i64) -> FreeBusyWindow {
        FreeBusyWindow {
            start: at(start),
            end: at(end),
            interval_minutes: minutes,
        }
    }

    #[test]
    fn the_view_shows_the_strongest_overlapping_status_and_touching_is_not_overlapping() {
        let w = window("2027-01-04T09:00:00Z", "2027-01-04T12:00:00Z", 30);
        let blocks = [
            block(
                "2027-01-04T09:00:00Z",
                "2027-01-04T10:00:00Z",
                BusyStatus::Tentative,
            ),
            block(
                "2027-01-04T09:30:00Z",
                "2027-01-04T10:00:00Z",
                BusyStatus::Busy,
            ),
            block(
                "2027-01-04T10:45:00Z",
                "2027-01-04T11:00:00Z",
                BusyStatus::WorkingElsewhere,
            ),
            block(
                "2027-01-04T11:00:00Z",
                "2027-01-04T13:00:00Z",
                BusyStatus::Oof,
            ),
            block(
                "2027-01-04T08:00:00Z",
                "2027-01-04T09:00:00Z",
                BusyStatus::Oof,
            ),
        ];
        assert_eq!(w.availability_view(&blocks), "120433");
    }

    #[test]
    fn a_window_that_is_not_whole_intervals_ends_with_a_short_one() {
        let w = window("2027-01-04T09:00:00Z", "2027-01-04T10:10:00Z", 30);
        assert_eq!(w.intervals(), 3);
        let late = [block(
            "2027-01-04T10:05:00Z",
            "2027-01-04T10:20:00Z",
            BusyStatus::Busy,
        )];
        assert_eq!(w.availability_view(&late), "002");
        let after = [block(
            "2027-01-04T10:10:00Z",
            "2027-01-04T10:20:00Z",
            BusyStatus::Busy,
        )];
        assert_eq!(w.availability_view(&after), "000");
    }

    #[test]
    fn queries_name_each_broken_limit() {
        let form = FreeBusyForm {
            schedules: (0..101).map(|i| format!("user{i}@nhs.net")).collect(),
            start: "2027-01-01T00:00:00Z".into(),
            end: "2027-02-12T00:00:01Z".into(),
            interval_minutes: Some(4),
        };
        let rules: Vec<_> = FreeBusyQuery::parse(&form)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.rule))
            .collect();
        assert_eq!(
            rules,
            [
                ("schedules".to_owned(), "max_items"),
                ("end".to_owned(), "max_window"),
                ("interval_minutes".to_owned(), "range"),
            ]
        );
        let ok = FreeBusyQuery::parse(&FreeBusyForm {
            schedules: vec!["A@nhs.net".into(), "a@NHS.net".into(), "b@nhs.net".into()],
            start: "2027-01-01T00:00:00+01:00".into(),
            end: "2027-02-11T23:00:00Z".into(),
            interval_minutes: None,
        })
        .unwrap();
        assert_eq!(ok.schedules.len(), 2);
        assert_eq!(ok.window.interval_minutes, 30);
    }

    #[test]
    fn blocks_are_named_by_index_and_field() {
        let range = ReplaceRange::parse("2027-01-04T00:00:00Z", "2027-01-05T00:00:00Z").unwrap();
        let forms = [
            BlockForm {
                start: "2027-01-04T09:00:00Z".into(),
                end: "2027-01-04T10:00:00Z".into(),
                status: "busy".into(),
                ..BlockForm::default()
            },
            BlockForm {
                start: "2027-01-04T11:00:00Z".into(),
                end: "2027-01-04T10:00:00Z".into(),
                status: "away".into(),
                ..BlockForm::default()
            },
            BlockForm {
                start: "2027-01-05T00:00:00Z".into(),
                end: "2027-01-05T01:00:00Z".into(),
                status: "oof".into(),
                subject: Some("Lunch\u{202E}".into()),
                ..BlockForm::default()
            },
        ];
        let rules: Vec<_> = parse_blocks(&range, &forms)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.rule))
            .collect();
        assert_eq!(
            rules,
            [
                ("blocks[1].status".to_owned(), "one_of"),
                ("blocks[1].end".to_owned(), "after_start"),
                ("blocks[2].subject".to_owned(), "no_invisible_characters"),
                ("blocks[2].start".to_owned(), "within_range"),
            ]
        );
    }

    fn london(days: &[&str], start: &str, end: &str) -> WorkingHours {
        WorkingHours::parse(&WorkingHoursForm {
            time_zone: "Europe/London".into(),
            days: days.iter().map(|d| (*d).to_owned()).collect(),
            start: start.into(),
            end: end.into(),
        })
        .unwrap()
    }

    #[test]
    fn working_hours_follow_london_across_the_clock_changes() {
        // The clocks went forward on Sunday 28 March 2027 and go back on Sunday 31 October.
        let hours = london(&["friday", "monday"], "09:00", "17:30");
        let spring = hours.periods(at("2027-03-26T00:00:00Z"), at("2027-03-30T00:00:00Z"));
        assert_eq!(
            spring,
            [
                (at("2027-03-26T09:00:00Z"), at("2027-03-26T17:30:00Z")),
                (at("2027-03-29T08:00:00Z"), at("2027-03-29T16:30:00Z")),
            ]
        );
        let autumn = hours.periods(at("2027-10-29T00:00:00Z"), at("2027-11-02T00:00:00Z"));
        assert_eq!(
            autumn,
            [
                (at("2027-10-29T08:00:00Z"), at("2027-10-29T16:30:00Z")),
                (at("2027-11-01T09:00:00Z"), at("2027-11-01T17:30:00Z")),
            ]
        );
    }

    #[test]
    fn working_hours_on_the_changeover_nights_take_the_earlier_offset() {
        // 01:30 does not exist on 28 March 2027 in London and happens twice on 31 October.
        let hours = london(&["sunday"], "01:30", "03:00");
        assert_eq!(
            hours.periods(at("2027-03-28T00:00:00Z"), at("2027-03-29T00:00:00Z")),
            [(at("2027-03-28T01:30:00Z"), at("2027-03-28T02:00:00Z"))]
        );
        assert_eq!(
            hours.periods(at("2027-10-31T00:00:00Z"), at("2027-11-01T00:00:00Z")),
            [(at("2027-10-31T00:30:00Z"), at("2027-10-31T03:00:00Z"))]
        );
    }

    #[test]
    fn working_hours_refuse_unknown_zones_and_inverted_ranges() {
        let rules: Vec<_> = WorkingHours::parse(&WorkingHoursForm {
            time_zone: "Europe/Atlantis".into(),
            days: vec!["monday".into(), "funday".into()],
            start: "17:00".into(),
            end: "09:00".into(),
        })
        .unwrap_err()
        .0
        .into_iter()
        .map(|e| (e.field, e.rule))
        .collect();
        assert_eq!(
            rules,
            [
                ("time_zone".to_owned(), "iana_time_zone"),
                ("days[1]".to_owned(), "one_of"),
                ("end".to_owned(), "after_start"),
            ]
        );
        assert_eq!(
            WorkingHours::parse(&WorkingHoursForm {
                time_zone: "UTC".into(),
                days: vec!["monday".into()],
                start: "9:00".into(),
                end: "24:00".into(),
            })
            .unwrap_err()
            .0
            .len(),
            2
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The view by definition: each interval on its own, every block looked at.
        fn brute_force(w: &FreeBusyWindow, blocks: &[BusyBlock]) -> String {
            let step = Duration::minutes(w.interval_minutes);
            let mut view = String::new();
            let mut from = w.start;
            while from < w.end {
                let to = (from + step).min(w.end);
                let best = blocks
                    .iter()
                    .filter(|b| b.start < to && b.end > from)
                    .max_by_key(|b| b.status.precedence());
                view.push(char::from(b'0' + best.map_or(0, |b| b.status.digit())));
                from = to;
            }
            view
        }

        fn status() -> impl Strategy<Value = BusyStatus> {
            prop::sample::select(BusyStatus::ALL.to_vec())
        }

        proptest! {
            #[test]
            fn the_view_equals_the_brute_force_evaluation(
                start in 0i64..10_000,
                span in 1i64..6_000,
                interval in 5i64..=200,
                blocks in prop::collection::vec((-500i64..16_000, 1i64..3_000, status()), 0..30),
            ) {
                let origin = at("2027-03-01T00:00:00Z");
                // Minutes, plus odd seconds so edges fall inside intervals too.
                let t = |m: i64| origin + Duration::seconds(m * 37);
                let w = FreeBusyWindow {
                    start: t(start),
                    end: t(start + span),
                    interval_minutes: interval,
                };
                let blocks: Vec<BusyBlock> = blocks
                    .into_iter()
                    .map(|(from, length, status)| BusyBlock {
                        start: t(from),
                        end: t(from + length),
                        status,
                        subject: None,
                        location: None,
                        private: false,
                    })
                    .collect();
                let view = w.availability_view(&blocks);
                prop_assert_eq!(view.len(), w.intervals());
                prop_assert_eq!(view, brute_force(&w, &blocks));
            }

            #[test]
            fn blocks_touching_the_window_edges_never_show(
                interval in 5i64..=120,
                span_intervals in 1i64..50,
                before in 1i64..500,
                after in 1i64..500,
                status in status(),
            ) {
                let start = at("2027-06-01T08:00:00Z");
                let end = start + Duration::minutes(interval * span_intervals);
                let w = FreeBusyWindow { start, end, interval_minutes: interval };
                let edge = |from: DateTime<Utc>, to: DateTime<Utc>| BusyBlock {
                    start: from, end: to, status, subject: None, location: None, private: false,
                };
                let blocks = [
                    edge(start - Duration::minutes(before), start),
                    edge(end, end + Duration::minutes(after)),
                ];
                prop_assert!(w.availability_view(&blocks).bytes().all(|b| b == b'0'));
            }
        }
    }
}
