-- Full-text search: a tsvector per task (title weighted A, body B, result C)
-- and per message, kept by triggers and indexed with GIN. The 'simple'
-- configuration folds case and does not stem, like the SQLite index: the
-- last word of a query matches as a prefix instead.

ALTER TABLE tasks ADD COLUMN search tsvector;
ALTER TABLE messages ADD COLUMN search tsvector;

CREATE FUNCTION tasks_search_update() RETURNS trigger AS $$
BEGIN
    NEW.search :=
        setweight(to_tsvector('simple', coalesce(NEW.title, '')), 'A') ||
        setweight(to_tsvector('simple', coalesce(NEW.body, '')), 'B') ||
        setweight(to_tsvector('simple', coalesce(NEW.result, '')), 'C');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

-- Claims, renewals and progress rewrite the row without touching the
-- indexed text; only a change of it reindexes.
CREATE TRIGGER tasks_search_insert BEFORE INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_search_update();
CREATE TRIGGER tasks_search_change BEFORE UPDATE OF title, body, result ON tasks
    FOR EACH ROW
    WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.body IS DISTINCT FROM NEW.body
          OR OLD.result IS DISTINCT FROM NEW.result)
    EXECUTE FUNCTION tasks_search_update();

CREATE FUNCTION messages_search_update() RETURNS trigger AS $$
BEGIN
    NEW.search := to_tsvector('simple', coalesce(NEW.text, ''));
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER messages_search_insert BEFORE INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_search_update();
CREATE TRIGGER messages_search_change BEFORE UPDATE OF text ON messages
    FOR EACH ROW WHEN (OLD.text IS DISTINCT FROM NEW.text)
    EXECUTE FUNCTION messages_search_update();

UPDATE tasks SET search =
    setweight(to_tsvector('simple', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('simple', coalesce(body, '')), 'B') ||
    setweight(to_tsvector('simple', coalesce(result, '')), 'C');
UPDATE messages SET search = to_tsvector('simple', text);

CREATE INDEX tasks_search ON tasks USING GIN (search);
CREATE INDEX messages_search ON messages USING GIN (search);
CREATE INDEX messages_sender ON messages (sender, at);
CREATE INDEX messages_recipient ON messages (recipient, at);
