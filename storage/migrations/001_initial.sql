-- The journal: append-only, each row chained to the one before by hash.
CREATE TABLE journal (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX journal_account_kind ON journal (account, kind);

-- Key/value engine state that survives restarts (HOLD per account, counters).
CREATE TABLE state (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Guarded positions and their protection state, one row per open position.
CREATE TABLE positions (
    account TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty TEXT NOT NULL,
    entry_price TEXT NOT NULL,
    generation INTEGER NOT NULL,
    state TEXT NOT NULL,
    stop_order_id TEXT,
    stop_client_id TEXT,
    stop_price TEXT,
    stop_qty TEXT,
    stop_seq INTEGER NOT NULL DEFAULT 0,
    close_seq INTEGER NOT NULL DEFAULT 0,
    opened_at TEXT,
    unprotected_since TEXT,
    last_time_to_protect TEXT,
    PRIMARY KEY (account, symbol)
);

-- Exchange credentials, Fernet-encrypted.
CREATE TABLE secrets (
    account TEXT PRIMARY KEY,
    ciphertext BLOB NOT NULL,
    updated_at TEXT NOT NULL
);
