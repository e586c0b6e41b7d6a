//! Free/busy as iCalendar (RFC 5545): one VCALENDAR, one VFREEBUSY per asked mailbox.
//!
//! Written here rather than with a crate: the output is a handful of properties, and what
//! matters (CRLF line endings, folding at 75 octets without splitting a character, UTC
//! periods, TEXT escaping) is tested below and, in the end-to-end tests, by an independent
//! parser (Python's `icalendar`).

use chrono::{DateTime, Utc};
use gateway_domain::calendar::{BusyStatus, FreeBusyWindow};
use gateway_domain::services::calendars::ScheduleAnswer;

const PRODID: &str = "-//Federation Gateway//Free-Busy 1.0//EN";

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// RFC 5545 TEXT escaping: backslash, semicolon, comma and line breaks.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `line` folded at 75 octets (continuation lines start with a space, which counts),
/// never inside a UTF-8 character, each line ended by CRLF.
fn push_line(out: &mut String, line: &str) {
    let mut limit = 75;
    let mut rest = line;
    while rest.len() > limit {
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        limit = 74;
    }
    out.push_str(rest);
    out.push_str("\r\n");
}

fn fbtype(status: BusyStatus) -> Option<&'static str> {
    match status {
        BusyStatus::Busy => Some("BUSY"),
        BusyStatus::Tentative => Some("BUSY-TENTATIVE"),
        BusyStatus::Oof => Some("BUSY-UNAVAILABLE"),
        // Working elsewhere is available time.
        BusyStatus::WorkingElsewhere => None,
    }
}

/// The answers as one VCALENDAR (METHOD:PUBLISH): each VFREEBUSY names its mailbox as
/// ORGANIZER, covers the window (DTSTART/DTEND) and lists the busy periods clipped to it, by
/// start; an unknown mailbox's has `REQUEST-STATUS:3.7;Invalid calendar user` and no periods.
pub fn free_busy(
    window: &FreeBusyWindow,
    answers: &[ScheduleAnswer],
    now: DateTime<Utc>,
) -> String {
    let mut out = String::with_capacity(256 + answers.len() * 512);
    for line in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        &format!("PRODID:{PRODID}"),
        "METHOD:PUBLISH",
    ] {
        push_line(&mut out, line);
    }
    let (start, end, dtstamp) = (stamp(window.start), stamp(window.end), stamp(now));
    for (n, answer) in answers.iter().enumerate() {
        push_line(&mut out, "BEGIN:VFREEBUSY");
        push_line(
            &mut out,
            &format!("UID:{start}-{end}-{n}@federation-gateway"),
        );
        push_line(&mut out, &format!("DTSTAMP:{dtstamp}"));
        push_line(&mut out, &format!("DTSTART:{start}"));
        push_line(&mut out, &format!("DTEND:{end}"));
        push_line(
            &mut out,
            &format!("ORGANIZER:mailto:{}", answer.address.as_str()),
        );
        match &answer.answer {
            Ok(availability) => {
                for item in &availability.items {
                    let Some(kind) = fbtype(item.status) else {
                        continue;
                    };
                    let from = item.start.max(window.start);
                    let to = item.end.min(window.end);
                    push_line(
                        &mut out,
                        &format!("FREEBUSY;FBTYPE={kind}:{}/{}", stamp(from), stamp(to)),
                    );
                }
            }
            Err(_) => push_line(
                &mut out,
                &format!("REQUEST-STATUS:3.7;{}", text("Invalid calendar user")),
            ),
        }
        push_line(&mut out, "END:VFREEBUSY");
    }
    push_line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let line = format!("ORGANIZER:mailto:{}@nhs.net", "é".repeat(60));
        push_line(&mut out, &line);
        let physical: Vec<&str> = out.split_terminator("\r\n").collect();
        assert!(physical.len() > 1);
        assert!(physical.iter().all(|l| l.len() <= 75), "{physical:?}");
        assert!(physical[1..].iter().all(|l| l.starts_with(' ')));
        let unfolded: String = physical
            .iter()
            .enumerate()
            .map(|(i, l)| if i == 0 { *l } else { &l[1..] })
            .collect();
        assert_eq!(unfolded, line);
    }

    #[test]
    fn text_values_are_escaped() {
        assert_eq!(text("a;b,c\\d\ne"), "a\\;b\\,c\\\\d\\ne");
    }
}
