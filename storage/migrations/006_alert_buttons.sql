-- Alerts about one position carry buttons ([Close] [Fix now] [Positions]): which position
-- (account, symbol, generation) and which actions, as JSON, so they survive a restart with the
-- alert. NULL: a plain alert.
ALTER TABLE outbox ADD COLUMN buttons TEXT;
