-- Coordination through the ledger only (several instances on one database, issue 12).
-- Who holds a running inbox trigger: only its current claim (holder and attempt number) may settle it.
ALTER TABLE inbox ADD COLUMN holder TEXT;
-- One poller per account at a time, under a lease; `token` grows with every take and fences the
-- watermark (a lapsed holder's late write is refused).
CREATE TABLE poll_leases (
    account    TEXT COLLATE "C" PRIMARY KEY,
    holder     TEXT,
    token      BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
