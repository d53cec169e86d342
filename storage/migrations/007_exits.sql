-- Exit plans and trail states (issue 12): one row per guarded position that has its own plan
-- or a trail state. Written before every amend the trail causes; a restart continues from it.
CREATE TABLE exits (
    account TEXT NOT NULL,
    symbol TEXT NOT NULL,
    plan TEXT,                          -- JSON, Decimals as strings; NULL: the settings' default
    generation INTEGER,                 -- the position the state belongs to
    side TEXT,                          -- long | short
    entry TEXT,                         -- Decimal as TEXT
    risk TEXT,
    activated INTEGER NOT NULL DEFAULT 0,
    best_mark TEXT,
    breakeven_done INTEGER NOT NULL DEFAULT 0,
    wanted TEXT,
    last_amend_at TEXT,                 -- UTC, fixed width
    last_amend_price TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (account, symbol)
);
