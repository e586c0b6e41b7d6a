-- Fails, changing nothing, when rejected registrations share an ODS code or a domain with
-- another organisation: the old schema cannot hold them.
DROP TABLE agreements;
DROP TABLE evidence_documents;
DROP TABLE evidence;

DROP INDEX organisation_domains_active_domain;
ALTER TABLE organisation_domains
    DROP CONSTRAINT organisation_domains_pkey,
    ADD PRIMARY KEY (domain);
CREATE INDEX organisation_domains_organisation_id ON organisation_domains (organisation_id);
ALTER TABLE organisation_domains DROP COLUMN active;

DROP INDEX organisations_ods_code_active;
ALTER TABLE organisations ADD CONSTRAINT organisations_ods_code_key UNIQUE (ods_code);
ALTER TABLE organisations DROP COLUMN status_reason, DROP COLUMN status;
