-- Bottleneck alerts (docs/insights.md): one row per time a rule started
-- holding for a subject. The row stays active (cleared_at NULL) while the
-- rule holds, so alerts survive restarts; at most one active row per key.
CREATE TABLE alerts (
    id               BIGSERIAL PRIMARY KEY,
    -- rule and subject, e.g. 'queue_wait:rust,review'
    key              TEXT NOT NULL,
    rule             TEXT NOT NULL,
    subject          TEXT NOT NULL,
    message          TEXT NOT NULL,
    raised_at        BIGINT NOT NULL,
    -- when alert.raised was last emitted for it (raise or repeat)
    notified_at      BIGINT NOT NULL,
    repeats          BIGINT NOT NULL DEFAULT 0,
    cleared_at       BIGINT
);

CREATE UNIQUE INDEX alerts_active_key ON alerts (key) WHERE cleared_at IS NULL;
CREATE INDEX alerts_raised ON alerts (raised_at);

-- Insights (docs/insights.md) read the claims of the last day and every
-- claim of the tasks among them (wait times after a retry).
CREATE INDEX task_runs_claimed ON task_runs (claimed_at);
CREATE INDEX task_runs_task ON task_runs (task_id, id);
