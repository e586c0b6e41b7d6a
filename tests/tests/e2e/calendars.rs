//! Calendar federation end to end: the publisher replaces busy blocks in a range and sets
//! working hours; a partner asks for free/busy and gets exactly what its agreement grants, as
//! JSON and as iCalendar (parsed back by Python's `icalendar`, an independent parser), with
//! unknown, hidden and out-of-scope mailboxes indistinguishable, limits named, every answer
//! a disclosure, and a suspension effective at once.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::address_book::{entry, gateway, publish, upsert};
use crate::e2e_tests;
use crate::onboarding::{act, approved_partner, approved_partner_with};
use crate::support::TestApp;

fn email(n: u32) -> String {
    format!("person{n}@nhs.net")
}

async fn put_busy(
    app: &TestApp,
    token: &str,
    mailbox: &str,
    from: &str,
    to: &str,
    blocks: Value,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(app.url(&format!("/v1/calendars/{mailbox}/busy")))
        .query(&[("from", from), ("to", to)])
        .bearer_auth(token)
        .json(&json!({ "blocks": blocks }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn put_hours(app: &TestApp, token: &str, mailbox: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(app.url(&format!("/v1/calendars/{mailbox}/working-hours")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn free_busy(
    app: &TestApp,
    token: &str,
    body: &Value,
    accept: &str,
) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .post(app.url("/v1/free-busy"))
        .bearer_auth(token)
        .header("Accept", accept)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

async fn free_busy_json(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let (status, _, text) = free_busy(app, token, body, "application/json").await;
    (status, serde_json::from_str(&text).unwrap())
}

fn block(start: &str, end: &str, status: &str) -> Value {
    json!({"start": start, "end": end, "status": status})
}

fn agreement(organisations: &[&str], detail: &str) -> Value {
    json!({
        "template_version": "2026-11",
        "scopes": {"free_busy": {"detail": detail, "organisations": organisations}},
        "term": {"starts_on": "2026-01-01", "ends_on": "2028-06-30"},
        "signatory": {"name": "Ada Lovelace", "role": "Caldicott Guardian", "email": "ada.lovelace@leedscare.org.uk"}
    })
}

/// The pinned Python with `icalendar` (tools/requirements.txt), which `.ci/run` installs.
fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/.venv/bin/python");
    assert!(
        python.exists(),
        "the iCalendar check needs the pinned Python tools: python3 -m venv tools/.venv && tools/.venv/bin/pip install -r tools/requirements.txt (.ci/run does this)"
    );
    python
}

/// What the independent parser read from `ics` (it refuses bare LFs and lines over 75 octets).
fn parsed_by_icalendar(ics: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/ical_check.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "icalendar refused the answer: {}\n{ics}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const DAY: (&str, &str) = ("2027-03-01T00:00:00Z", "2027-03-02T00:00:00Z");

e2e_tests! {
    async fn partners_get_free_busy_at_the_detail_granted_and_cannot_enumerate(backend) {
        let (app, provider, publisher, _dir) = gateway(backend).await;
        let ops = vec![
            upsert(entry(1, "RR8", false)),
            upsert(entry(2, "RR8", true)),
            upsert(entry(3, "AB1", false)),
        ];
        let (status, answer, _) = publish(&app, &publisher, None, &json!({"operations": ops})).await;
        assert_eq!(status, 200, "{answer}");
        let (status, stored) = put_busy(&app, &publisher, &email(1), DAY.0, DAY.1, json!([
            {"start": "2027-03-01T09:00:00Z", "end": "2027-03-01T10:00:00Z", "status": "busy", "subject": "Ward round", "location": "Ward 7"},
            {"start": "2027-03-01T10:30:00+00:00", "end": "2027-03-01T11:00:00Z", "status": "tentative", "subject": "Appraisal", "private": true},
            {"start": "2027-03-01T13:00:00Z", "end": "2027-03-02T09:00:00Z", "status": "oof", "subject": "Leave"},
            {"start": "2027-03-01T12:15:00Z", "end": "2027-03-01T12:45:00Z", "status": "working_elsewhere"},
        ])).await;
        assert_eq!((status, stored["stored"].as_u64()), (200, Some(4)), "{stored}");
        for n in [2, 3] {
            let (status, _) = put_busy(&app, &publisher, &email(n), DAY.0, DAY.1, json!([block("2027-03-01T09:00:00Z", "2027-03-01T17:00:00Z", "busy")])).await;
            assert_eq!(status, 200);
        }
        let (status, hours) = put_hours(&app, &publisher, &email(1).to_uppercase(), json!({
            "time_zone": "Europe/London", "days": ["friday", "monday", "monday"], "start": "09:00", "end": "17:30"
        })).await;
        assert_eq!(status, 200, "{hours}");
        assert_eq!(hours["days"], json!(["monday", "friday"]));

        let (partner, _, approver, aid) = approved_partner_with(
            &app, &provider, 1, agreement(&["RR8"], "limited_details"),
            json!({"action": "approve", "grant_limited_details": true}),
        ).await;
        let token = app.access_token(partner.id, &partner.key).await;
        let query = json!({
            "schedules": [email(1), email(1).to_uppercase(), email(2), email(3), "nobody@nhs.net"],
            "start": "2027-03-01T08:00:00Z", "end": "2027-03-01T18:00:00Z", "interval_minutes": 60
        });
        let (status, answer) = free_busy_json(&app, &token, &query).await;
        assert_eq!(status, 200, "{answer}");
        let schedules = answer["schedules"].as_array().unwrap();
        // Repeats folded (in any case), request order kept.
        let addresses: Vec<&str> = schedules.iter().map(|s| s["address"].as_str().unwrap()).collect();
        assert_eq!(addresses, [email(1).as_str(), &email(2), &email(3), "nobody@nhs.net"]);
        let one = &schedules[0];
        // 08 free, 09 busy, 10 tentative, 11 free, 12 working elsewhere, 13-17 out of office.
        assert_eq!(one["availability_view"], "0210433333", "{one}");
        // Whole items by start; limited details, but nothing of the private one.
        let items = one["items"].as_array().unwrap();
        assert_eq!(items.len(), 4, "{one}");
        assert_eq!(items[0], json!({"start": "2027-03-01T09:00:00Z", "end": "2027-03-01T10:00:00Z", "status": "busy", "subject": "Ward round", "location": "Ward 7"}));
        assert_eq!(items[1], json!({"start": "2027-03-01T10:30:00Z", "end": "2027-03-01T11:00:00Z", "status": "tentative"}));
        assert_eq!(items[3]["end"], "2027-03-02T09:00:00Z");
        assert_eq!(one["working_hours"]["periods"], json!([{"start": "2027-03-01T09:00:00Z", "end": "2027-03-01T17:30:00Z"}]));
        assert_eq!(one["working_hours"]["time_zone"], "Europe/London");
        // Hidden, outside the agreement's organisations, unknown: one answer, byte for byte.
        let anonymous: Vec<String> = schedules[1..].iter().map(|s| {
            let mut s = s.clone();
            s["address"] = json!("x");
            s.to_string()
        }).collect();
        assert!(anonymous.iter().all(|s| s == &anonymous[0]), "{anonymous:?}");
        assert_eq!(schedules[1]["error"]["code"], "mailbox_not_found");
        assert_eq!(schedules[1]["availability_view"], "");

        // Merged: the view only.
        let mut merged = query.clone();
        merged["view"] = json!("merged");
        let (_, answer) = free_busy_json(&app, &token, &merged).await;
        assert!(answer["schedules"][0].get("items").is_none());
        assert_eq!(answer["schedules"][0]["availability_view"], one["availability_view"]);

        // iCalendar, read back by an independent parser.
        let (status, content_type, ics) = free_busy(&app, &token, &query, "text/calendar").await;
        assert_eq!((status, content_type.as_str()), (200, "text/calendar; charset=utf-8"));
        let parsed = parsed_by_icalendar(&ics);
        assert_eq!(parsed["version"], "2.0");
        let calendars = parsed["schedules"].as_array().unwrap();
        assert_eq!(calendars.len(), 4);
        assert_eq!(calendars[0]["organizer"], format!("mailto:{}", email(1)));
        assert_eq!((calendars[0]["dtstart"].as_str(), calendars[0]["dtend"].as_str()), (Some("2027-03-01T08:00:00Z"), Some("2027-03-01T18:00:00Z")));
        // Working elsewhere is free time; the out-of-office block is clipped to the window.
        assert_eq!(calendars[0]["periods"], json!([
            ["BUSY", "2027-03-01T09:00:00Z", "2027-03-01T10:00:00Z"],
            ["BUSY-TENTATIVE", "2027-03-01T10:30:00Z", "2027-03-01T11:00:00Z"],
            ["BUSY-UNAVAILABLE", "2027-03-01T13:00:00Z", "2027-03-01T18:00:00Z"],
        ]));
        for unknown in &calendars[1..] {
            assert_eq!(unknown["periods"], json!([]));
            assert!(unknown["request_status"].as_str().unwrap().starts_with("3.7;"), "{unknown}");
        }
        assert!(!ics.contains("Ward round"), "no detail in iCalendar free/busy");

        // Limits: each named with its field (422), nothing answered.
        let mut too_many = query.clone();
        too_many["schedules"] = json!((0..101).map(|i| format!("u{i}@nhs.net")).collect::<Vec<_>>());
        too_many["end"] = json!("2027-04-12T08:00:01Z");
        too_many["interval_minutes"] = json!(4);
        let (status, problem) = free_busy_json(&app, &token, &too_many).await;
        assert_eq!(status, 422, "{problem}");
        let fields: Vec<(&str, &str)> = problem["errors"].as_array().unwrap().iter().map(|e| (e["field"].as_str().unwrap(), e["rule"].as_str().unwrap())).collect();
        assert_eq!(fields, [("schedules", "max_items"), ("end", "max_window"), ("interval_minutes", "range")]);

        // Every answer is a disclosure: who, which agreement, which mailboxes, which window.
        let disclosures: Vec<_> = app.all_events().into_iter().filter(|e| e.action == "data.disclosed" && e.details["what"] == "free_busy.answer").collect();
        assert_eq!(disclosures.len(), 3, "one per answer served");
        assert_eq!(disclosures[0].details["organisation_id"], partner.id.to_string());
        assert_eq!(disclosures[0].details["agreement_id"], aid);
        assert_eq!(disclosures[0].details["mailboxes"], json!([email(1)]));
        assert_eq!((disclosures[0].details["start"].as_str(), disclosures[0].details["end"].as_str()), (Some("2027-03-01T08:00:00Z"), Some("2027-03-01T18:00:00Z")));

        // A suspension stops free/busy at once, for the token already issued too.
        let (status, body) = act(&approver, &app, &aid, json!({"action": "suspend", "reason": "DSPT standards not met this year"})).await;
        assert_eq!(status, 200, "{body}");
        let (status, _) = free_busy_json(&app, &token, &query).await;
        assert_eq!(status, 403);
    }

    async fn the_publisher_replaces_blocks_in_a_range_atomically(backend) {
        let (app, provider, publisher, _dir) = gateway(backend).await;
        let (status, _, _) = publish(&app, &publisher, None, &json!({"operations": [upsert(entry(1, "RR8", false))]})).await;
        assert_eq!(status, 200);
        let morning = block("2027-03-01T09:00:00Z", "2027-03-01T10:00:00Z", "busy");
        let afternoon = json!({"start": "2027-03-01T14:00:00Z", "end": "2027-03-01T15:00:00Z", "status": "busy", "subject": "Clinic"});
        let (status, first) = put_busy(&app, &publisher, &email(1), DAY.0, DAY.1, json!([morning, afternoon])).await;
        assert_eq!((status, first["removed"].as_u64(), first["stored"].as_u64()), (200, Some(0), Some(2)));
        // The same request again: idempotent.
        let (_, again) = put_busy(&app, &publisher, &email(1), DAY.0, DAY.1, json!([morning, afternoon])).await;
        assert_eq!((again["removed"].as_u64(), again["stored"].as_u64()), (Some(2), Some(2)));
        // Only blocks starting in the range are replaced.
        let (_, afternoon_only) = put_busy(&app, &publisher, &email(1), "2027-03-01T12:00:00Z", DAY.1, json!([block("2027-03-01T16:00:00Z", "2027-03-01T17:00:00Z", "tentative")])).await;
        assert_eq!(afternoon_only["removed"], 1);

        // A bad batch is refused whole, each bad block named; nothing changes.
        let (status, problem) = put_busy(&app, &publisher, &email(1), DAY.0, DAY.1, json!([
            block("2027-03-01T08:00:00Z", "2027-03-01T08:30:00Z", "busy"),
            block("2027-03-01T11:00:00Z", "2027-03-01T10:00:00Z", "away"),
            block("2027-03-02T00:00:00Z", "2027-03-02T01:00:00Z", "busy"),
            {"start": "tomorrow", "end": "2027-03-01T10:00:00Z", "status": "busy"},
        ])).await;
        assert_eq!(status, 422, "{problem}");
        let fields: Vec<(&str, &str)> = problem["errors"].as_array().unwrap().iter().map(|e| (e["field"].as_str().unwrap(), e["rule"].as_str().unwrap())).collect();
        assert_eq!(fields, [("blocks[1].status", "one_of"), ("blocks[1].end", "after_start"), ("blocks[2].start", "within_range"), ("blocks[3].start", "rfc3339")]);
        let (status, problem) = put_busy(&app, &publisher, &email(1), DAY.1, DAY.0, json!([])).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("to")));
        let (status, _) = put_busy(&app, &publisher, "nobody@nhs.net", DAY.0, DAY.1, json!([])).await;
        assert_eq!(status, 404);
        let (status, problem) = put_hours(&app, &publisher, &email(1), json!({"time_zone": "Europe/Atlantis", "days": ["monday"], "start": "17:00", "end": "09:00"})).await;
        assert_eq!(status, 422, "{problem}");
        let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["time_zone", "end"]);

        // An availability-only partner sees the blocks, never their subjects.
        let (partner, _, _, _) = approved_partner(&app, &provider, 2, agreement(&["RR8"], "availability_only")).await;
        let token = app.access_token(partner.id, &partner.key).await;
        let (status, answer) = free_busy_json(&app, &token, &json!({
            "schedules": [email(1)], "start": DAY.0, "end": DAY.1, "interval_minutes": 1440
        })).await;
        assert_eq!(status, 200, "{answer}");
        let schedule = &answer["schedules"][0];
        assert_eq!(schedule["availability_view"], "2");
        assert_eq!(schedule["items"], json!([
            {"start": "2027-03-01T09:00:00Z", "end": "2027-03-01T10:00:00Z", "status": "busy"},
            {"start": "2027-03-01T16:00:00Z", "end": "2027-03-01T17:00:00Z", "status": "tentative"},
        ]));
        assert!(schedule.get("working_hours").is_none());
        // A partner may not publish.
        let (status, _) = put_busy(&app, &token, &email(1), DAY.0, DAY.1, json!([])).await;
        assert_eq!(status, 403);
    }
}
