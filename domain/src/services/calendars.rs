//! The calendars' use cases: the publisher replaces a mailbox's busy blocks in a range and
//! sets its working hours; partners ask for free/busy, answered per mailbox at the detail
//! their agreement grants.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::agreement::{FreeBusyDetail, FreeBusyScope};
use crate::calendar::{
    parse_blocks, BlockForm, BusyBlock, FreeBusyQuery, ReplaceRange, WorkingHours, WorkingHoursForm,
};
use crate::clock::Clock;
use crate::contact::EmailAddress;
use crate::ports::{CalendarRepository, Replaced, RepositoryError};
use crate::validation::ValidationErrors;

use super::{ServiceError, ServiceResult};

#[derive(Clone)]
pub struct CalendarService {
    pub calendars: Arc<dyn CalendarRepository>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for CalendarService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendarService").finish_non_exhaustive()
    }
}

/// A mailbox's working hours and the periods they make inside the window (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingTime {
    pub hours: WorkingHours,
    pub periods: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// What one mailbox's answer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    pub view: String,
    /// The blocks overlapping the window, whole, by start, with only the detail granted.
    pub items: Vec<BusyBlock>,
    pub working_time: Option<WorkingTime>,
}

/// Why a mailbox has no answer. A mailbox outside the agreement's organisations, hidden
/// from the address book or unknown is the same `NotFound`, so a partner cannot tell them
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxError {
    NotFound,
}

/// One asked mailbox, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleAnswer {
    pub address: EmailAddress,
    pub answer: Result<Availability, MailboxError>,
}

fn mailbox(raw: &str) -> ServiceResult<EmailAddress> {
    EmailAddress::parse(raw)
        .map_err(|e| ServiceError::Invalid(ValidationErrors(vec![e.at("mailbox")])))
}

fn not_found(error: RepositoryError) -> ServiceError {
    match error {
        RepositoryError::NotFound => ServiceError::NotFound,
        other => other.into(),
    }
}

/// Only what `detail` grants: subject and location for `limited_details`, never for a
/// private block.
fn disclosed(block: &BusyBlock, detail: FreeBusyDetail) -> BusyBlock {
    let shown = detail == FreeBusyDetail::LimitedDetails && !block.private;
    BusyBlock {
        subject: block.subject.clone().filter(|_| shown),
        location: block.location.clone().filter(|_| shown),
        ..block.clone()
    }
}

impl CalendarService {
    /// Replaces, atomically, the mailbox's blocks whose start lies in `[from, to)` with
    /// `forms` (each must start inside the range): sending the same body again changes
    /// nothing more. `NotFound` when no present directory entry has the address.
    pub fn replace(
        &self,
        mailbox_address: &str,
        from: &str,
        to: &str,
        forms: &[BlockForm],
    ) -> ServiceResult<Replaced> {
        let mut errors = ValidationErrors::default();
        let address = errors.check("mailbox", EmailAddress::parse(mailbox_address));
        let parsed = ReplaceRange::parse(from, to)
            .and_then(|range| Ok((range, parse_blocks(&range, forms)?)))
            .map_err(|e| errors.0.extend(e.0))
            .ok();
        let (address, (range, blocks)) = errors.finish(|| Some((address?, parsed?)))?;
        self.calendars
            .replace_blocks(&address, &range, &blocks)
            .map_err(not_found)
    }

    /// Sets (replaces) the mailbox's working hours.
    pub fn set_working_hours(
        &self,
        mailbox_address: &str,
        form: &WorkingHoursForm,
    ) -> ServiceResult<WorkingHours> {
        let address = mailbox(mailbox_address)?;
        let hours = WorkingHours::parse(form)?;
        self.calendars
            .set_working_hours(&address, &hours, self.clock.now())
            .map_err(not_found)?;
        Ok(hours)
    }

    /// Free/busy of each asked mailbox within `scope`, in request order.
    pub fn free_busy(
        &self,
        scope: &FreeBusyScope,
        query: &FreeBusyQuery,
    ) -> ServiceResult<Vec<ScheduleAnswer>> {
        let window = query.window;
        let found = self.calendars.calendars(
            &query.schedules,
            &scope.organisations,
            window.start,
            window.end,
        )?;
        let mut by_address: HashMap<String, _> = found
            .into_iter()
            .map(|calendar| (calendar.email_key.clone(), calendar))
            .collect();
        Ok(query
            .schedules
            .iter()
            .map(|address| {
                let answer = by_address
                    .remove(&address.as_str().to_lowercase())
                    .map(|calendar| Availability {
                        view: window.availability_view(&calendar.blocks),
                        items: calendar
                            .blocks
                            .iter()
                            .filter(|b| window.overlaps(b))
                            .map(|b| disclosed(b, scope.detail))
                            .collect(),
                        working_time: calendar.working_hours.map(|hours| WorkingTime {
                            periods: hours.periods(window.start, window.end),
                            hours,
                        }),
                    })
                    .ok_or(MailboxError::NotFound);
                ScheduleAnswer {
                    address: address.clone(),
                    answer,
                }
            })
            .collect())
    }
}
