-- Polls and their votes. One vote per (poll, voter): a later vote replaces
-- the earlier one. The tally is computed from the votes (SUM of weights).

CREATE TABLE polls (
    id          BIGSERIAL PRIMARY KEY,
    question    TEXT NOT NULL,
    options     TEXT[] NOT NULL,
    voters      TEXT NOT NULL DEFAULT 'all', -- agents | discord | twitch | all
    state       TEXT NOT NULL DEFAULT 'open',
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    closes_at   BIGINT NOT NULL,
    closed_at   BIGINT
);

-- the poll sweeper: open polls by closing time.
CREATE INDEX polls_due ON polls (closes_at) WHERE state = 'open';

CREATE TABLE poll_votes (
    poll_id   BIGINT NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    voter     TEXT NOT NULL,
    option    BIGINT NOT NULL,             -- 1-based index into options
    weight    BIGINT NOT NULL DEFAULT 1,
    voted_at  BIGINT NOT NULL,
    PRIMARY KEY (poll_id, voter)
);
