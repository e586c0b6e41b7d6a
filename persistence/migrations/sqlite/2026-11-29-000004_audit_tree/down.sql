DROP TABLE audit_keys;
DROP TABLE audit_checkpoints;
DROP TABLE audit_tree;
DROP INDEX audit_events_organisation;
DROP INDEX audit_events_unsealed;
DROP INDEX audit_events_log_position;
ALTER TABLE audit_events DROP COLUMN organisation_id;
ALTER TABLE audit_events DROP COLUMN log_position;
