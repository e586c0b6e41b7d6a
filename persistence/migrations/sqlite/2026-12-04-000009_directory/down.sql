DROP TABLE idempotency_keys;
DROP TABLE directory_feed;
DROP TABLE directory_changes;
DROP TABLE directory_entries;
