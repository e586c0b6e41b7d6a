-- Reviewer sessions, server-side so every replica sees a sign-out at once. The browser's
-- cookie holds only a random session id; this table keeps its SHA-256 (hex), never the id.
-- Roles are those of the provider's claims at sign-in (a JSON array of role names).
CREATE TABLE reviewer_sessions (
    id_sha256 TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    name TEXT,
    email TEXT,
    roles TEXT NOT NULL,
    person BOOLEAN NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
-- Purging finds ended sessions by these.
CREATE INDEX reviewer_sessions_expires_at ON reviewer_sessions (expires_at);
CREATE INDEX reviewer_sessions_last_seen_at ON reviewer_sessions (last_seen_at);
