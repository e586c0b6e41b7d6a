-- Back to one active claim per domain and one active organisation per ODS code. Fails,
-- changing nothing, when active organisations now share a domain or an ODS code: the old
-- schema cannot hold them (reject the extra registrations first).
DROP INDEX organisations_ods_code;
CREATE UNIQUE INDEX organisations_ods_code_active ON organisations (ods_code) WHERE status = 'active';

DROP INDEX organisation_domains_domain;
DROP INDEX organisation_domains_verified_domain;
CREATE UNIQUE INDEX organisation_domains_active_domain ON organisation_domains (domain) WHERE active;

ALTER TABLE organisation_domains DROP COLUMN record_missing_since;
ALTER TABLE organisation_domains DROP COLUMN verification_reason;
ALTER TABLE organisation_domains DROP COLUMN verified_by;
ALTER TABLE organisation_domains DROP COLUMN verification_method;
ALTER TABLE organisation_domains DROP COLUMN verified_at;
ALTER TABLE organisation_domains DROP COLUMN verification_token;
