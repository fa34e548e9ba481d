-- Fault injection (docs/reliability.md): after a write failed because the
-- disk was full or another process held the lock, GET /ready writes one
-- row here (replacing the last) to learn whether writes work again.
CREATE TABLE write_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at INTEGER NOT NULL,
    filler     BLOB NOT NULL
);
