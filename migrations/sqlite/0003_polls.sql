-- Polls and their votes. One vote per (poll, voter): a later vote replaces
-- the earlier one. The tally is computed from the votes (SUM of weights).

CREATE TABLE polls (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    question    TEXT NOT NULL,
    options     TEXT NOT NULL,              -- JSON array of strings
    voters      TEXT NOT NULL DEFAULT 'all', -- agents | discord | twitch | all
    state       TEXT NOT NULL DEFAULT 'open',
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    closes_at   INTEGER NOT NULL,
    closed_at   INTEGER
);

-- the poll sweeper: open polls by closing time.
CREATE INDEX polls_due ON polls (closes_at) WHERE state = 'open';

CREATE TABLE poll_votes (
    poll_id   INTEGER NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    voter     TEXT NOT NULL,
    option    INTEGER NOT NULL,             -- 1-based index into options
    weight    INTEGER NOT NULL DEFAULT 1,
    voted_at  INTEGER NOT NULL,
    PRIMARY KEY (poll_id, voter)
) WITHOUT ROWID;
