-- Replay at scale and retention (issue 17).
-- An event's targets by seq: the targets of a page of events, and deleting
-- the targets of pruned events, without scanning the whole table.
CREATE INDEX event_targets_seq ON event_targets (seq);

-- Events at or below pruned_to were removed by retention (acked by every
-- agent and older than events.retention_days); a resume from below it is
-- answered with resume_gap. One row.
CREATE TABLE event_retention (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_to  BIGINT NOT NULL DEFAULT 0,
    pruned_at  BIGINT
);
INSERT INTO event_retention (id, pruned_to) VALUES (1, 0);
