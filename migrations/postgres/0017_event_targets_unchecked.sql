-- The foreign key from event_targets to events cost a referential check
-- per target row (an index probe and a lock on the event row) inside the
-- commit turn, where every instance's appends wait on each other. Targets
-- are only ever written in the statement that appends their event, and
-- retention deletes them before their events, so the key guarded nothing.
ALTER TABLE event_targets DROP CONSTRAINT IF EXISTS event_targets_seq_fkey;
