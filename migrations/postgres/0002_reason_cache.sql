-- Answers of the reasoning backend, keyed by sha256(model, mode, normalized prompt).
CREATE TABLE reason_cache (
    digest      TEXT PRIMARY KEY,
    model       TEXT NOT NULL,
    mode        TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    text        TEXT NOT NULL,
    confidence  DOUBLE PRECISION,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX reason_cache_expiry ON reason_cache (expires_at);
