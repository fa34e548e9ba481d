-- Schedules: recurring task creation or broadcasts (docs/schedules.md).
-- Times are unix milliseconds. `next_at` is the next occurrence due; firing
-- one moves it forward with a compare-and-set on its old value in the same
-- transaction that creates the task or broadcast, so each occurrence fires
-- once across restarts and across instances.
CREATE TABLE schedules (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    cron           TEXT,                  -- a cron expression, or NULL for `every`
    timezone       TEXT NOT NULL DEFAULT 'UTC',
    every_s        INTEGER,                -- an interval in seconds, or NULL for `cron`
    anchor_at      INTEGER,                -- `every`: occurrences fall on anchor_at + k * every_s
    action         TEXT NOT NULL,         -- task | broadcast
    title          TEXT NOT NULL,         -- the task's title or the broadcast's text
    body           TEXT NOT NULL DEFAULT '',
    requires       TEXT NOT NULL DEFAULT '[]',
    priority       INTEGER NOT NULL DEFAULT 0,
    topic          TEXT,
    missed         TEXT NOT NULL DEFAULT 'skip', -- skip | run_once
    state          TEXT NOT NULL DEFAULT 'active', -- active | paused
    next_at        INTEGER NOT NULL,
    last_fired_at  INTEGER,
    fired          INTEGER NOT NULL DEFAULT 0,
    created_by     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- the schedule sweeper: active schedules by their next occurrence.
CREATE INDEX schedules_due ON schedules (next_at) WHERE state = 'active';
