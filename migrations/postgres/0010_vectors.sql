-- Vectors for semantic search (docs/search.md): one per task or message,
-- tagged with the embeddings model that made it. The numbers are
-- little-endian f32 one after the other in a bytea; the server ranks the
-- rows that pass the filters by exact cosine (pgvector is not required;
-- docs/search.md says how to switch to it).
CREATE TABLE item_vectors (
    kind        TEXT NOT NULL CHECK (kind IN ('task', 'message')),
    item_id     BIGINT NOT NULL,
    model       TEXT NOT NULL,
    dims        INTEGER NOT NULL,
    vector      BYTEA NOT NULL,
    embedded_at BIGINT NOT NULL,
    PRIMARY KEY (kind, item_id)
);
CREATE INDEX item_vectors_model ON item_vectors (model, kind, item_id);
