-- The coordination core on PostgreSQL: agents, tasks, durable events.
-- Times are unix milliseconds (BIGINT); lists are TEXT[].

CREATE TABLE agents (
    name          TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL DEFAULT 'agent',
    capabilities  TEXT[] NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    last_seen     BIGINT,
    acked_seq     BIGINT NOT NULL DEFAULT 0,
    base_seq      BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE tasks (
    id               BIGSERIAL PRIMARY KEY,
    title            TEXT NOT NULL,
    body             TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL DEFAULT 'open',
    priority         BIGINT NOT NULL DEFAULT 0,
    requires         TEXT[] NOT NULL DEFAULT '{}',
    tags             TEXT[] NOT NULL DEFAULT '{}',
    assignee         TEXT,
    lease_expires_at BIGINT,
    claimed_at       BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL DEFAULT 3,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    result           TEXT,
    error            TEXT,
    progress         TEXT,
    percent          BIGINT
);

-- claim_next walks open tasks by priority, then age (FOR UPDATE SKIP LOCKED).
CREATE INDEX tasks_open_queue ON tasks (priority DESC, id) WHERE state = 'open';
-- the lease sweeper and "tasks held by an agent".
CREATE INDEX tasks_claimed_lease ON tasks (lease_expires_at) WHERE state = 'claimed';
CREATE INDEX tasks_assignee ON tasks (assignee, state);
CREATE INDEX tasks_state ON tasks (state, id);

-- One global, strictly increasing sequence shared by all agents and all
-- instances. Appends are serialised by a transaction-level advisory lock
-- held until commit, so `seq` order is commit order.
CREATE TABLE events (
    seq       BIGSERIAL PRIMARY KEY,
    kind      TEXT NOT NULL,
    at        BIGINT NOT NULL,
    data      TEXT NOT NULL,
    to_all    BOOLEAN NOT NULL DEFAULT FALSE,
    requires  TEXT[]
);

CREATE TABLE event_targets (
    agent  TEXT NOT NULL,
    seq    BIGINT NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    PRIMARY KEY (agent, seq)
);

CREATE INDEX events_broad ON events (seq) WHERE to_all OR requires IS NOT NULL;

-- Direct messages and broadcasts, kept for search and the dashboard.
CREATE TABLE messages (
    id         BIGSERIAL PRIMARY KEY,
    sender     TEXT NOT NULL,
    recipient  TEXT,
    topic      TEXT,
    text       TEXT NOT NULL,
    at         BIGINT NOT NULL,
    seq        BIGINT
);
