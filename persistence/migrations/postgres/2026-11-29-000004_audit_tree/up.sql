-- The tamper-evident trail. Rows are inserted unsealed (log_position NULL); the sequencer seals
-- committed rows in commit order, giving each its position, its chain hash and its leaf in an
-- RFC 9162 Merkle tree whose complete subtrees are kept in audit_tree. Readers see only sealed
-- rows, by position, so none ever skips a record that commits late.
ALTER TABLE audit_events ADD COLUMN log_position BIGINT;
ALTER TABLE audit_events ADD COLUMN organisation_id TEXT;
CREATE UNIQUE INDEX audit_events_log_position ON audit_events (log_position);
CREATE INDEX audit_events_unsealed ON audit_events (seq) WHERE log_position IS NULL;
CREATE INDEX audit_events_organisation ON audit_events (organisation_id, log_position);
UPDATE audit_events SET organisation_id = CASE
    WHEN subject_type = 'organisation' THEN subject_id
    WHEN actor_type = 'organisation' THEN actor_id
    ELSE details::jsonb ->> 'organisation_id' END;

-- Node (level, idx) covers leaves idx * 2^level .. (idx + 1) * 2^level: complete subtrees only.
CREATE TABLE audit_tree (
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed tree heads (JWS, typ gw-checkpoint+jws).
CREATE TABLE audit_checkpoints (
    tree_size BIGINT PRIMARY KEY NOT NULL,
    root_hash TEXT NOT NULL,
    chain_hash TEXT NOT NULL,
    signed_at TIMESTAMP NOT NULL,
    kid TEXT NOT NULL,
    jws TEXT NOT NULL
);

-- Every public key that ever signed a checkpoint, kept after it stops signing tokens. The MAC
-- (under a key derived from the key-encryption key) keeps a database writer from adding one.
CREATE TABLE audit_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    public_jwk TEXT NOT NULL,
    mac TEXT NOT NULL,
    first_used_at TIMESTAMP NOT NULL
);
