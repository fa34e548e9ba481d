-- Tasks per state, moved by each write batch in its commit turn (under the
-- event lock, with its events), so an instance publishing another's commits
-- reads five rows instead of counting every task.
CREATE TABLE task_counts (
    state TEXT PRIMARY KEY,
    n     BIGINT NOT NULL
);

INSERT INTO task_counts (state, n)
SELECT s, (SELECT count(*) FROM tasks WHERE state = s)
FROM unnest(ARRAY['open', 'claimed', 'done', 'failed', 'cancelled']) AS s;
