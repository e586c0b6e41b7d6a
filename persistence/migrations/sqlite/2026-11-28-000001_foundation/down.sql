DROP TABLE audit_events;
DROP TABLE secure_email_domains;
DROP TABLE registration_credentials;
DROP TABLE organisation_domains;
DROP TABLE organisations;
