-- One row per claim of a task: opened when the task is claimed, closed (in
-- the same transaction as the task change) when the claim ends.
CREATE TABLE task_runs (
    id          BIGSERIAL PRIMARY KEY,
    task_id     BIGINT NOT NULL,
    agent       TEXT NOT NULL,
    claimed_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    -- done, failed, released, expired, cancelled; NULL while the claim is held
    outcome     TEXT
);

CREATE INDEX task_runs_agent ON task_runs (agent, outcome);
CREATE INDEX task_runs_open ON task_runs (task_id) WHERE ended_at IS NULL;
CREATE INDEX task_runs_ended ON task_runs (outcome, ended_at);
