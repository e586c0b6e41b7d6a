-- Domain ownership proof: every claim carries a random verification token and, once proven
-- (DNS TXT record or a reviewer by hand), when and how it was verified. Only a verified claim
-- holds a name, so the one-active-claim-per-domain index becomes one verified claim per
-- domain; unverified claims of the same name may coexist. ODS codes are held by approved
-- agreements, not by registrations: several registrations may name one code.
ALTER TABLE organisation_domains ADD COLUMN verification_token TEXT NOT NULL DEFAULT '';
ALTER TABLE organisation_domains ADD COLUMN verified_at TIMESTAMP;
ALTER TABLE organisation_domains ADD COLUMN verification_method TEXT;
ALTER TABLE organisation_domains ADD COLUMN verified_by TEXT;
ALTER TABLE organisation_domains ADD COLUMN verification_reason TEXT;
ALTER TABLE organisation_domains ADD COLUMN record_missing_since TIMESTAMP;
-- Existing claims start unverified, each with its own random token.
UPDATE organisation_domains SET verification_token = md5(random()::text || clock_timestamp()::text || organisation_id || domain);

DROP INDEX organisation_domains_active_domain;
CREATE UNIQUE INDEX organisation_domains_verified_domain ON organisation_domains (domain)
    WHERE active AND verified_at IS NOT NULL;
CREATE INDEX organisation_domains_domain ON organisation_domains (domain);

DROP INDEX organisations_ods_code_active;
CREATE INDEX organisations_ods_code ON organisations (ods_code);
ALTER TABLE organisation_domains ALTER COLUMN verification_token DROP DEFAULT;
