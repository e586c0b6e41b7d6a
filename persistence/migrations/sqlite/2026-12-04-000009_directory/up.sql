-- The national directory as published to the gateway: the current state of every entry (a
-- deleted entry stays as a tombstone, deleted_at set, until the feed's retention passes).
CREATE TABLE directory_entries (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    given_name TEXT,
    surname TEXT,
    job_title TEXT,
    department TEXT,
    ods_code TEXT NOT NULL,
    organisation_name TEXT NOT NULL,
    office_phone TEXT,
    mobile_phone TEXT,
    hidden BOOLEAN NOT NULL,
    changed_at TIMESTAMP NOT NULL,
    deleted_at TIMESTAMP
);
CREATE UNIQUE INDEX directory_entries_email ON directory_entries (email) WHERE deleted_at IS NULL;
CREATE INDEX directory_entries_deleted ON directory_entries (deleted_at) WHERE deleted_at IS NOT NULL;

-- The change feed. Publishers insert rows without a position; the sequencer (as for the audit
-- trail) positions committed rows in commit order, so a reader paging by position never skips
-- one that committed late. Each row records where its entry stood for scoping before and after
-- the change: its ODS code (NULL: absent) and whether it was hidden.
CREATE TABLE directory_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    position BIGINT,
    entry_id TEXT NOT NULL,
    changed_at TIMESTAMP NOT NULL,
    before_ods TEXT,
    before_hidden BOOLEAN NOT NULL,
    after_ods TEXT,
    after_hidden BOOLEAN NOT NULL
);
CREATE UNIQUE INDEX directory_changes_position ON directory_changes (position);
CREATE INDEX directory_changes_unpositioned ON directory_changes (seq) WHERE position IS NULL;

-- One row: the highest position purged. Cursors below it must resync from scratch.
CREATE TABLE directory_feed (
    id INTEGER PRIMARY KEY NOT NULL,
    purged_through BIGINT NOT NULL
);
INSERT INTO directory_feed (id, purged_through) VALUES (1, 0);

-- Answers to requests made with an Idempotency-Key, so a retry changes nothing and gets the
-- first answer. Purged by maintenance after a week.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    answer TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
