-- Identity and access: partners' public keys, client-assertion jti replay cache, and the
-- gateway's own token-signing keys (private halves sealed by the key-encryption key).
CREATE TABLE partner_keys (
    organisation_id TEXT NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    kid TEXT NOT NULL,
    kty TEXT NOT NULL,
    alg TEXT,
    jwk TEXT NOT NULL,
    added_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    PRIMARY KEY (organisation_id, kid)
);

-- The primary key makes a replayed jti fail even when two replicas race.
CREATE TABLE assertion_jtis (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX assertion_jtis_expires_at ON assertion_jtis (expires_at);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    alg TEXT NOT NULL,
    sealed_private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    retire_after TIMESTAMP
);
