-- Foundation: organisations, their domains and registration credentials, the accredited
-- secure-email list, and the audit trail. Times are UTC.
CREATE TABLE organisations (
    id TEXT PRIMARY KEY NOT NULL,
    ods_code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    exchange_version TEXT NOT NULL,
    ig_lead_name TEXT NOT NULL,
    ig_lead_email TEXT NOT NULL,
    technical_name TEXT NOT NULL,
    technical_email TEXT NOT NULL,
    business_need TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- The primary key on domain is what makes "a domain belongs to one organisation" hold under
-- concurrent registrations.
CREATE TABLE organisation_domains (
    domain TEXT PRIMARY KEY NOT NULL,
    organisation_id TEXT NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    position INTEGER NOT NULL
);
CREATE INDEX organisation_domains_organisation_id ON organisation_domains (organisation_id);

CREATE TABLE registration_credentials (
    selector TEXT PRIMARY KEY NOT NULL,
    organisation_id TEXT NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    secret_sha256 TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX registration_credentials_organisation_id ON registration_credentials (organisation_id);

-- Entries are an exact domain or '*.' followed by a parent domain.
CREATE TABLE secure_email_domains (
    pattern TEXT PRIMARY KEY NOT NULL,
    imported_at TIMESTAMP NOT NULL
);

-- Append-only. prev_hash and hash carry the tamper-evident chain.
CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    occurred_at TIMESTAMP NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT,
    action TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id TEXT,
    request_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT,
    hash TEXT
);
CREATE INDEX audit_events_subject ON audit_events (subject_type, subject_id);
