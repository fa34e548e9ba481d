-- Full-text search: FTS5 indexes over tasks (title, body, result) and
-- messages (text), as external-content tables kept in step by triggers.
-- unicode61 folds case and diacritics for every script. No stemmer: the
-- porter stemmer is English-only and defeats prefix queries ("observab*"
-- would not find "observability", stored as "observ"), and the search
-- matches the last word of a query as a prefix instead.

CREATE VIRTUAL TABLE tasks_fts USING fts5 (
    title, body, result,
    content = 'tasks', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER tasks_fts_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_fts (rowid, title, body, result)
    VALUES (new.id, new.title, new.body, new.result);
END;

CREATE TRIGGER tasks_fts_delete AFTER DELETE ON tasks BEGIN
    INSERT INTO tasks_fts (tasks_fts, rowid, title, body, result)
    VALUES ('delete', old.id, old.title, old.body, old.result);
END;

-- Claims, renewals and progress rewrite the row without touching the
-- indexed text; only a real change of it reindexes.
CREATE TRIGGER tasks_fts_update AFTER UPDATE OF title, body, result ON tasks
WHEN old.title IS NOT new.title OR old.body IS NOT new.body OR old.result IS NOT new.result
BEGIN
    INSERT INTO tasks_fts (tasks_fts, rowid, title, body, result)
    VALUES ('delete', old.id, old.title, old.body, old.result);
    INSERT INTO tasks_fts (rowid, title, body, result)
    VALUES (new.id, new.title, new.body, new.result);
END;

CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text,
    content = 'messages', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages
WHEN old.text IS NOT new.text
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;

-- Index what existed before this migration.
INSERT INTO tasks_fts (tasks_fts) VALUES ('rebuild');
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

CREATE INDEX messages_sender ON messages (sender, at);
CREATE INDEX messages_recipient ON messages (recipient, at);
