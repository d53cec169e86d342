-- Risky actions wait here for a Confirm/Cancel tap; survives restarts, executes at most once.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    requested_by INTEGER NOT NULL,
    requested_by_name TEXT NOT NULL,
    chat_id INTEGER NOT NULL,
    message_id INTEGER,
    lang TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by INTEGER,
    decided_at TEXT,
    outcome TEXT
);
CREATE INDEX approvals_status_expiry ON approvals (status, expires_at);
