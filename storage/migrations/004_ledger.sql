-- Money movements as the venues report them (realized PnL, fees, funding): daily PnL is summed
-- from here. A movement keeps its venue ref, so syncing the same period twice stores it once.
CREATE TABLE ledger (
    account TEXT NOT NULL,
    ref TEXT NOT NULL,
    symbol TEXT,                           -- NULL: not tied to one market
    kind TEXT NOT NULL CHECK (kind IN ('realized_pnl', 'fee', 'funding')),
    amount TEXT NOT NULL,                  -- signed Decimal as text, settlement currency
    at TEXT NOT NULL,                      -- UTC, fixed width: 2026-01-05T12:00:00.000000Z
    PRIMARY KEY (account, ref)
);
CREATE INDEX ledger_account_at ON ledger (account, at);
