-- Learned allocation (docs/insights.md, "Learned allocation"): a new task
-- may be offered to one agent first. Until offer_expires_at only that agent
-- may claim it; after that anyone may (and the offer is cleared).
ALTER TABLE tasks ADD COLUMN offered_to TEXT;
ALTER TABLE tasks ADD COLUMN offer_expires_at INTEGER;

-- the offer sweeper: offers by their end.
CREATE INDEX tasks_offered ON tasks (offer_expires_at) WHERE offered_to IS NOT NULL;
