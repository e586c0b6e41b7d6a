-- Fixed-window counters shared by every replica: rate limits that must hold across replicas
-- (registrations, failed client assertions and sign-ins per client address), and the counts
-- that the server flushes into one aggregated audit record per (source, minute). Windows are
-- minutes, keyed by their start in seconds since the Unix epoch; finished windows are removed
-- by the server's periodic flush.
CREATE TABLE rate_limit_counters (
    limit_name TEXT NOT NULL,
    client_key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    note TEXT,
    PRIMARY KEY (limit_name, client_key, window_start)
);
CREATE INDEX rate_limit_counters_window_start ON rate_limit_counters (window_start);
