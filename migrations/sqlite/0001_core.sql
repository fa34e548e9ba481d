-- The coordination core: agents, tasks, durable events.
-- Times are unix milliseconds; lists are JSON arrays of strings.

CREATE TABLE agents (
    name          TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL DEFAULT 'agent',
    capabilities  TEXT NOT NULL DEFAULT '[]',
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    last_seen     INTEGER,
    acked_seq     INTEGER NOT NULL DEFAULT 0,
    base_seq      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    title            TEXT NOT NULL,
    body             TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL DEFAULT 'open',
    priority         INTEGER NOT NULL DEFAULT 0,
    requires         TEXT NOT NULL DEFAULT '[]',
    tags             TEXT NOT NULL DEFAULT '[]',
    assignee         TEXT,
    lease_expires_at INTEGER,
    claimed_at       INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    result           TEXT,
    error            TEXT,
    progress         TEXT,
    percent          INTEGER
);

-- claim_next walks open tasks by priority, then age.
CREATE INDEX tasks_open_queue ON tasks (priority DESC, id) WHERE state = 'open';
-- the lease sweeper and "tasks held by an agent".
CREATE INDEX tasks_claimed_lease ON tasks (lease_expires_at) WHERE state = 'claimed';
CREATE INDEX tasks_assignee ON tasks (assignee, state);
CREATE INDEX tasks_state ON tasks (state, id);

-- One global, strictly increasing sequence shared by all agents.
-- An event goes to every agent (to_all), to every agent whose capabilities
-- cover `requires`, and to the agents listed in event_targets.
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT NOT NULL,
    at        INTEGER NOT NULL,
    data      TEXT NOT NULL,
    to_all    INTEGER NOT NULL DEFAULT 0,
    requires  TEXT
);

CREATE TABLE event_targets (
    agent  TEXT NOT NULL,
    seq    INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    PRIMARY KEY (agent, seq)
) WITHOUT ROWID;

CREATE INDEX events_broad ON events (seq) WHERE to_all = 1 OR requires IS NOT NULL;

-- Direct messages, kept for search and the dashboard (the delivery itself is the event).
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sender     TEXT NOT NULL,
    recipient  TEXT,
    topic      TEXT,
    text       TEXT NOT NULL,
    at         INTEGER NOT NULL,
    seq        INTEGER
);
