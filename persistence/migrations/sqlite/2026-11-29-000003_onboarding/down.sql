-- The rebuild of up.sql in reverse (foreign keys off, one transaction, checked). Fails,
-- changing nothing, when rejected registrations share an ODS code or a domain with another
-- organisation: the old schema cannot hold them.
PRAGMA foreign_keys = OFF;
BEGIN;

DROP TABLE agreements;
DROP TABLE evidence_documents;
DROP TABLE evidence;

CREATE TABLE organisation_domains_old (
    domain TEXT PRIMARY KEY NOT NULL,
    organisation_id TEXT NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    position INTEGER NOT NULL
);
INSERT INTO organisation_domains_old (domain, organisation_id, position)
    SELECT domain, organisation_id, position FROM organisation_domains;
DROP TABLE organisation_domains;
ALTER TABLE organisation_domains_old RENAME TO organisation_domains;
CREATE INDEX organisation_domains_organisation_id ON organisation_domains (organisation_id);

CREATE TABLE organisations_old (
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
INSERT INTO organisations_old (id, ods_code, name, category, exchange_version, ig_lead_name,
        ig_lead_email, technical_name, technical_email, business_need, version, created_at,
        updated_at)
    SELECT id, ods_code, name, category, exchange_version, ig_lead_name, ig_lead_email,
        technical_name, technical_email, business_need, version, created_at, updated_at
    FROM organisations;
DROP TABLE organisations;
ALTER TABLE organisations_old RENAME TO organisations;

CREATE TEMP TABLE onboarding_fk_check (violations INTEGER NOT NULL CHECK (violations = 0));
INSERT INTO onboarding_fk_check SELECT count(*) FROM pragma_foreign_key_check;
DROP TABLE onboarding_fk_check;

COMMIT;
PRAGMA foreign_keys = ON;
