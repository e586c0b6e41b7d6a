-- Onboarding: an organisation's status (a rejected registration stays on record while its
-- ODS code and domains stop counting), information-governance evidence with its documents,
-- and partner agreements.
ALTER TABLE organisations
    ADD COLUMN status TEXT NOT NULL DEFAULT 'active',
    ADD COLUMN status_reason TEXT;
-- An ODS code belongs to one active organisation; rejected ones keep theirs on record.
ALTER TABLE organisations DROP CONSTRAINT organisations_ods_code_key;
CREATE UNIQUE INDEX organisations_ods_code_active ON organisations (ods_code) WHERE status = 'active';

-- A rejected organisation's claims stay on record, inactive; one active claim per domain.
ALTER TABLE organisation_domains ADD COLUMN active BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE organisation_domains
    DROP CONSTRAINT organisation_domains_pkey,
    ADD PRIMARY KEY (organisation_id, domain);
-- The primary key now leads with organisation_id.
DROP INDEX organisation_domains_organisation_id;
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
    content BYTEA NOT NULL
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
