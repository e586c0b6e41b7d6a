-- The registration access token's state per organisation, for reviewers: issued (at
-- registration or by an approver after a revocation), rotated by its holder, revoked by an
-- approver. registration_credentials keeps only the live credentials: a rotation replaces the
-- old one, a revocation removes them all. Organisations registered before this get the state
-- of the token they hold.
CREATE TABLE registration_tokens (
    organisation_id TEXT PRIMARY KEY NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    issued_at TIMESTAMP NOT NULL,
    issued_by TEXT,
    rotated_at TIMESTAMP,
    rotations BIGINT NOT NULL,
    revoked_at TIMESTAMP,
    revoked_by TEXT,
    revocation_reason TEXT,
    version BIGINT NOT NULL
);

INSERT INTO registration_tokens (organisation_id, state, issued_at, rotations, version)
SELECT organisation_id, 'active', MIN(created_at), 0, 1
FROM registration_credentials
GROUP BY organisation_id;
