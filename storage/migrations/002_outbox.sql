-- Alerts on their way to Telegram: written before any attempt to send, so a crash, a 429 or a
-- network outage delays an alert but never loses it. Delivered and dropped rows are kept for
-- the record (and pruned after a while).
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL,
    text TEXT NOT NULL,
    loud INTEGER NOT NULL DEFAULT 0,       -- 1: with sound (critical); 0: disable_notification
    dedupe_key TEXT,                       -- identical pending alerts for one chat coalesce
    count INTEGER NOT NULL DEFAULT 1,      -- how many times the alert was raised while pending
    created_at TEXT NOT NULL,              -- UTC, fixed width: 2026-01-05T12:00:00.000000Z
    next_attempt_at TEXT NOT NULL,         -- same format, so text order is time order
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dropped')),
    sent_at TEXT,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
-- At most one pending row per (chat, alert): a repeat bumps `count` (INSERT ... ON CONFLICT).
CREATE UNIQUE INDEX outbox_pending_dedupe ON outbox (chat_id, dedupe_key)
    WHERE status = 'pending' AND dedupe_key IS NOT NULL;
