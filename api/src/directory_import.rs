//! `federation-gateway directory import` and `directory synthesize`: loading the national
//! directory from JSON Lines through the publisher's own code path, and making a synthetic one
//! for demos and benchmarks.
//!
//! Resuming: each batch is applied with an idempotency key made of its first line number and
//! the SHA-256 of its lines, committed in the batch's own transaction. Run again after an
//! interruption (or after fixing a bad line), batches already committed are recognised and
//! skipped without being applied twice; nothing acknowledged is lost or doubled.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::Context as _;
use gateway_domain::directory::{OperationForm, MAX_BATCH};
use gateway_domain::services::directory::{DirectoryService, IdempotencyKey};
use gateway_domain::services::{Context, ServiceError};
use gateway_domain::Actor;
use sha2::Digest;

use crate::config::Settings;
use crate::dto::{DirectoryEntryBody, DirectoryOperationBody, EntryOrganisation};
use crate::error::ApiError;
use crate::startup::open_database;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub lines: u64,
    pub batches_applied: u64,
    /// Batches an earlier run had already committed.
    pub batches_skipped: u64,
    pub upserted: u64,
    pub deleted: u64,
    pub unchanged: u64,
}

/// A line the import refused: its number, the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: u64,
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{} bad line(s); the batch holding them was not applied (the ones before it were): {}", .0.len(), summary(.0))]
pub struct BadLines(pub Vec<BadLine>);

fn summary(lines: &[BadLine]) -> String {
    lines
        .iter()
        .take(20)
        .map(|b| format!("line {}: {}: {}", b.line, b.field, b.message))
        .collect::<Vec<_>>()
        .join("; ")
}

const IMPORT_SCOPE: &str = "directory.import";

/// Applies one batch of lines (`(line number, text)`), unless an earlier run committed it.
fn apply_batch(
    service: &DirectoryService,
    ctx: &Context,
    lines: &[(u64, String)],
    report: &mut ImportReport,
) -> anyhow::Result<()> {
    let Some(&(first, _)) = lines.first() else {
        return Ok(());
    };
    let mut digest = sha2::Sha256::new();
    for (_, text) in lines {
        digest.update(text.as_bytes());
        digest.update(b"\n");
    }
    let bytes: [u8; 32] = digest.finalize().into();
    let hash = gateway_domain::audit::hex(&bytes);
    let key = IdempotencyKey {
        scope: IMPORT_SCOPE.to_owned(),
        key: format!("line-{first}-{hash}"),
        request_sha256: hash,
    };
    if service
        .directory
        .idempotent_answer(&key.scope, &key.key)?
        .is_some()
    {
        report.batches_skipped += 1;
        return Ok(());
    }
    let mut forms = Vec::with_capacity(lines.len());
    let mut bad = Vec::new();
    for (number, text) in lines {
        match crate::extract::parse_json::<DirectoryOperationBody>(text.as_bytes()) {
            Ok(op) => forms.push(OperationForm::from(op)),
            Err(ApiError::Malformed { detail, errors }) => bad.push(BadLine {
                line: *number,
                field: errors.first().map(|e| e.field.clone()).unwrap_or_default(),
                message: errors.first().map(|e| e.message.clone()).unwrap_or(detail),
            }),
            Err(other) => return Err(other.into()),
        }
    }
    if !bad.is_empty() {
        return Err(BadLines(bad).into());
    }
    match service.publish(ctx, &forms, Some(&key)) {
        Ok(published) => {
            let count = |name: &str| published.answer[name].as_u64().unwrap_or(0);
            report.upserted += count("upserted");
            report.deleted += count("deleted");
            report.unchanged += count("unchanged");
            report.batches_applied += 1;
            Ok(())
        }
        Err(ServiceError::Invalid(errors)) => {
            // `operations[i].entry.email` names the i-th line of this batch.
            let bad = errors
                .0
                .into_iter()
                .map(|e| {
                    let (index, field) = e
                        .field
                        .strip_prefix("operations[")
                        .and_then(|rest| rest.split_once(']'))
                        .map(|(i, rest)| (i.parse::<usize>().ok(), rest.trim_start_matches('.')))
                        .unwrap_or((None, e.field.as_str()));
                    BadLine {
                        line: index
                            .and_then(|i| lines.get(i))
                            .map_or(first, |(number, _)| *number),
                        field: field.to_owned(),
                        message: e.message,
                    }
                })
                .collect();
            Err(BadLines(bad).into())
        }
        Err(other) => Err(ApiError::from(other).into()),
    }
}

/// Imports FILE (JSON Lines: one `{"op":"upsert","entry":{...}}` or `{"op":"delete","id":...}`
/// a line; blank lines are skipped) in batches of `batch` lines, each all or nothing, then
/// positions the changes and seals the audit records before it returns.
pub fn import(
    settings: &Settings,
    file: &Path,
    batch: usize,
    progress: bool,
) -> anyhow::Result<ImportReport> {
    let batch = batch.clamp(1, MAX_BATCH);
    let db = std::sync::Arc::new(open_database(settings)?);
    let service = DirectoryService {
        directory: db.clone(),
        clock: std::sync::Arc::new(gateway_domain::SystemClock),
    };
    let ctx = Context {
        actor: Actor::Operator(std::env::var("USER").unwrap_or_else(|_| "operator".to_owned())),
        request_id: None,
    };
    let handle =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if progress {
        indicatif::ProgressBar::new(size)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut reader = BufReader::with_capacity(1 << 20, bar.wrap_read(handle));
    let mut report = ImportReport::default();
    let mut pending: Vec<(u64, String)> = Vec::with_capacity(batch);
    let mut number = 0u64;
    let mut line = String::new();
    let result = loop {
        line.clear();
        let read = match (&mut reader).take(MAX_LINE_BYTES + 2).read_line(&mut line) {
            Ok(read) => read,
            Err(error) => {
                break Err(anyhow::Error::from(error)
                    .context(format!("reading line {} (is the file UTF-8?)", number + 1)))
            }
        };
        if read > 0 {
            number += 1;
            if line.trim_end_matches(['\n', '\r']).len() as u64 > MAX_LINE_BYTES {
                break Err(anyhow::anyhow!(
                    "line {number}: longer than {MAX_LINE_BYTES} bytes (one operation a line)"
                ));
            }
            let text = line.trim_end_matches(['\n', '\r']);
            if !text.trim().is_empty() {
                pending.push((number, text.to_owned()));
                report.lines += 1;
            }
        }
        if pending.len() >= batch || (read == 0 && !pending.is_empty()) {
            if let Err(error) = apply_batch(&service, &ctx, &pending, &mut report) {
                break Err(error);
            }
            pending.clear();
            bar.set_message(format!(
                "{} upserted, {} deleted, {} unchanged",
                report.upserted, report.deleted, report.unchanged
            ));
        }
        if read == 0 {
            break Ok(());
        }
    };
    bar.finish_and_clear();
    // Whatever was committed gets its feed positions and sealed audit records, also when a
    // bad line stopped the import.
    service.sequence_all().map_err(ApiError::from)?;
    db.analyze_directory()
        .context("refreshing the directory's planner statistics")?;
    crate::audit_log::seal_all(db.as_ref(), &gateway_persistence::Sha256Hasher)
        .context("sealing the audit records this import wrote")?;
    result.map(|()| report)
}

/// The longest line an import reads (a whole entry is a few hundred bytes).
const MAX_LINE_BYTES: u64 = 1 << 20;

/// A deterministic pseudo-random sequence (SplitMix64): the same seed, the same directory.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const GIVEN: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Ivy",
    "Lily",
    "Sophia",
    "Grace",
    "Freya",
    "Emily",
    "Ella",
    "Poppy",
    "Evie",
    "Charlotte",
    "Aisha",
    "Priya",
    "Fatima",
    "Zara",
    "Chloe",
    "Noah",
    "Oliver",
    "George",
    "Arthur",
    "Muhammad",
    "Leo",
    "Harry",
    "Oscar",
    "Archie",
    "Henry",
    "Jack",
    "Thomas",
    "James",
    "William",
    "Joshua",
    "Daniel",
    "Samuel",
    "Rohan",
    "Arjun",
    "Kwame",
    "Tomasz",
    "Siobhan",
    "Niamh",
    "Rhys",
    "Cerys",
    "Eilidh",
    "Callum",
    "Bethan",
    "Ewan",
    "Hannah",
];
const SURNAMES: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Khan",
    "Ahmed",
    "Singh",
    "Begum",
    "Murphy",
    "O'Brien",
    "Kowalski",
    "Okafor",
    "Nguyen",
    "Campbell",
];
const TITLES: &[&str] = &[
    "Staff Nurse",
    "Ward Sister",
    "Consultant Cardiologist",
    "Registrar",
    "Healthcare Assistant",
    "Physiotherapist",
    "Occupational Therapist",
    "Pharmacist",
    "Radiographer",
    "Midwife",
    "Practice Manager",
    "GP Partner",
    "Receptionist",
    "Medical Secretary",
    "Paramedic",
    "Clinical Lead",
    "Service Manager",
    "IT Analyst",
    "Information Governance Lead",
    "Safeguarding Lead",
];
const DEPARTMENTS: &[&str] = &[
    "Cardiology",
    "Emergency Department",
    "Maternity",
    "Oncology",
    "Paediatrics",
    "Radiology",
    "Pharmacy",
    "Orthopaedics",
    "General Practice",
    "Community Nursing",
    "Mental Health",
    "Estates",
    "Informatics",
    "Finance",
    "Human Resources",
];
const PLACES: &[&str] = &[
    "Leeds",
    "Bradford",
    "Sheffield",
    "Manchester",
    "Liverpool",
    "Newcastle",
    "Bristol",
    "Birmingham",
    "Nottingham",
    "Leicester",
    "York",
    "Hull",
    "Norwich",
    "Exeter",
    "Plymouth",
    "Oxford",
    "Cambridge",
    "Brighton",
    "Southampton",
    "Derby",
    "Coventry",
    "Wakefield",
    "Harrogate",
    "Durham",
    "Cumbria",
    "Kent",
    "Surrey",
    "Essex",
    "Devon",
    "Cornwall",
];
const KINDS: &[&str] = &[
    "Teaching Hospitals NHS Trust",
    "Community Health NHS Trust",
    "NHS Foundation Trust",
    "Integrated Care Board",
    "Mental Health NHS Trust",
    "Primary Care Network",
    "Ambulance Service NHS Trust",
    "City Council Adult Social Care",
];

/// The ODS code and name of synthetic organisation `n` (stable for a given `n`).
pub fn synthetic_organisation(n: u64) -> (String, String) {
    let letters = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    let a = letters[(n / 100 % letters.len() as u64) as usize] as char;
    let code = format!("R{a}{:02}", n % 100);
    let mut rng = Rng(n.wrapping_mul(7919));
    let name = format!("{} {}", rng.pick(PLACES), rng.pick(KINDS));
    (code, name)
}

/// Writes `entries` synthetic upserts across `organisations` organisations as JSON Lines:
/// realistic names, one in fifty hidden from the address book, ids and emails stable for a
/// given `seed`.
pub fn synthesize(
    out: &mut dyn Write,
    entries: u64,
    organisations: u64,
    seed: u64,
) -> anyhow::Result<()> {
    let organisations = organisations.max(1);
    let orgs: Vec<(String, String)> = (0..organisations).map(synthetic_organisation).collect();
    let mut rng = Rng(seed);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    for n in 0..entries {
        let given = rng.pick(GIVEN);
        let surname = rng.pick(SURNAMES);
        let (ods_code, org_name) = &orgs[rng.below(organisations) as usize];
        let id = uuid::Uuid::from_u64_pair(seed, n);
        let local: String = format!("{given}.{surname}{n}")
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let entry = DirectoryEntryBody {
            id: id.to_string(),
            email: format!("{local}@nhs.net"),
            display_name: format!("{given} {surname}"),
            given_name: Some(given.to_owned()),
            surname: Some(surname.to_owned()),
            job_title: Some(rng.pick(TITLES).to_owned()),
            department: (rng.below(4) != 0).then(|| rng.pick(DEPARTMENTS).to_owned()),
            organisation: EntryOrganisation {
                ods_code: ods_code.clone(),
                name: org_name.clone(),
            },
            office_phone: Some(format!(
                "0113 {:03} {:04}",
                rng.below(1000),
                rng.below(10_000)
            )),
            mobile_phone: (rng.below(3) == 0)
                .then(|| format!("07{:03} {:06}", rng.below(1000), rng.below(1_000_000))),
            hidden_from_address_book: rng.below(50) == 0,
        };
        serde_json::to_writer(&mut out, &DirectoryOperationBody::Upsert { entry })?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
