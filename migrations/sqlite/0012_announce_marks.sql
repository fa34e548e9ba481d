-- Durable announcements (docs/deploy.md): per announcement target (a
-- platform channel, e.g. `discord` or `twitch:#somechannel`) the `seq` of
-- the last event announced there, written by the owner of the platform
-- connection as it sends, read by the next owner (or this server after a
-- restart) to announce what was committed while nobody announced.
CREATE TABLE announce_marks (
    target TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL
);
