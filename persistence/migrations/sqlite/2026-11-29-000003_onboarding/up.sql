-- Onboarding: an organisation's status (a rejected registration stays on record while its
-- ODS code and domains stop counting), information-governance evidence with its documents,
-- and partner agreements.
--
-- SQLite cannot drop a column constraint, so organisations and organisation_domains are
-- rebuilt (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys off, one
-- transaction, a foreign-key check before COMMIT, foreign keys on again.
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE organisations_new (
    id TEXT PRIMARY KEY NOT NULL,
    ods_code TEXT NOT NULL,
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
    updated_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    status_reason TEXT
);
INSERT INTO organisations_new (id, ods_code, name, category, exchange_version, ig_lead_name,
        ig_lead_email, technical_name, technical_email, business_need, version, created_at,
        updated_at)
    SELECT id, ods_code, name, category, exchange_version, ig_lead_name, ig_lead_email,
        technical_name, technical_email, business_need, version, created_at, updated_at
    FROM organisations;
DROP TABLE organisations;
ALTER TABLE organisations_new RENAME TO organisations;
-- An ODS code belongs to one active organisation; rejected ones keep theirs on record.
CREATE UNIQUE INDEX organisations_ods_code_active ON organisations (ods_code) WHERE status = 'active';

-- A rejected organisation's claims stay on record, inactive; one active claim per domain.
CREATE TABLE organisation_domains_new (
    organisation_id TEXT NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    position INTEGER NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (organisation_id, domain)
);
INSERT INTO organisation_domains_new (organisation_id, domain, position, active)
    SELECT organisation_id, domain, position, TRUE FROM organisation_domains;
DROP TABLE organisation_domains;
ALTER TABLE organisation_domains_new RENAME TO organisation_domains;
CREATE UNIQUE INDEX organisation_domains_active_domain ON organisation_domains (domain) WHERE active;

CREATE TABLE evidence (
    id TEXT PRIMARY KEY NOT NULL,
    organisation_id TEXT NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    title TEXT,
    dspt_status TEXT,
    registration_number TEXT,
    published_on DATE,
    expires_on DATE,
    document_sha256 TEXT,
    document_size BIGINT,
    document_filename TEXT,
    submitted_at TIMESTAMP NOT NULL,
    verdict TEXT,
    verdict_reason TEXT,
    verdict_by TEXT,
    verdict_at TIMESTAMP,
    superseded_by TEXT
);
CREATE INDEX evidence_organisation_id ON evidence (organisation_id);

-- Documents live in the database so that every replica can serve them.
CREATE TABLE evidence_documents (
    evidence_id TEXT PRIMARY KEY NOT NULL REFERENCES evidence (id) ON DELETE CASCADE,
    content BLOB NOT NULL
);

-- scopes, signature and review_check are JSON documents.
CREATE TABLE agreements (
    id TEXT PRIMARY KEY NOT NULL,
    organisation_id TEXT NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    template_version TEXT NOT NULL,
    template_sha256 TEXT NOT NULL,
    scopes TEXT NOT NULL,
    starts_on DATE NOT NULL,
    ends_on DATE NOT NULL,
    signatory_name TEXT NOT NULL,
    signatory_role TEXT NOT NULL,
    signatory_email TEXT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT,
    suspension TEXT,
    signature TEXT,
    review_check TEXT,
    limited_details_granted BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX agreements_organisation_id ON agreements (organisation_id);
CREATE INDEX agreements_state_id ON agreements (state, id);
-- One agreement in force per organisation, also when two approvals race.
CREATE UNIQUE INDEX agreements_one_in_force ON agreements (organisation_id)
    WHERE state IN ('approved', 'suspended');

-- PRAGMA foreign_key_check only reports: make any violation fail the migration.
CREATE TEMP TABLE onboarding_fk_check (violations INTEGER NOT NULL CHECK (violations = 0));
INSERT INTO onboarding_fk_check SELECT count(*) FROM pragma_foreign_key_check;
DROP TABLE onboarding_fk_check;

COMMIT;
PRAGMA foreign_keys = ON;
