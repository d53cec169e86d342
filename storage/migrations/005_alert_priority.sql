-- Critical alerts (missing stop past the SLA, HALT, loss cap, stop crossed) go before routine
-- ones in every chat; routine ones may be dropped with a count when they grow old.
ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;  -- 1 critical, 0 routine
-- The sender reads each chat's pending alerts in (priority, id) order.
CREATE INDEX outbox_chat_order ON outbox (status, chat_id, priority DESC, id, next_attempt_at);

-- Strangers already reported to the admins (bounded: only the most recent are kept), so a
-- restart does not report them again.
CREATE TABLE reported_strangers (
    user_id INTEGER PRIMARY KEY,
    reported_at TEXT NOT NULL              -- UTC, fixed width: 2026-01-05T12:00:00.000000Z
);
CREATE INDEX reported_strangers_at ON reported_strangers (reported_at);
