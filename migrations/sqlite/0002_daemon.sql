-- The daemon's state: per-account watermarks, poll history, the webhook inbox, and claims.

-- How far each account's polling has examined (operations updated up to this instant).
-- Advanced only after a whole window was processed.
CREATE TABLE watermarks (
    account      TEXT    PRIMARY KEY,
    watermark_ms INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
);

-- One row per poll, for `status`, /healthz and the operator.
CREATE TABLE polls (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account      TEXT    NOT NULL,
    started_ms   INTEGER NOT NULL,
    finished_ms  INTEGER NOT NULL,
    window_from_ms INTEGER NOT NULL,
    window_to_ms INTEGER NOT NULL,
    ok           INTEGER NOT NULL,
    summary      TEXT    NOT NULL,
    error        TEXT
);
CREATE INDEX polls_by_account ON polls (account, id);

-- Durable inbox of webhook triggers. The handler only inserts here; a worker re-reads the
-- operation from the API. Duplicates of a pending trigger collapse (partial unique index).
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account      TEXT    NOT NULL,
    uid          TEXT    NOT NULL,
    kind         TEXT    NOT NULL DEFAULT 'webhook',
    received_ms  INTEGER NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'pending',   -- pending | running | done | dead | ignored
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_after_ms INTEGER NOT NULL,
    lease_until_ms INTEGER,
    last_error   TEXT,
    done_ms      INTEGER
);
CREATE UNIQUE INDEX inbox_one_pending ON inbox (account, uid) WHERE state IN ('pending', 'running');
CREATE INDEX inbox_due ON inbox (state, run_after_ms);

-- Cross-process claims: one booking at a time per (account, key) across every paysync process
-- sharing this ledger (the daemon and a manual `sync`, or several instances).
CREATE TABLE claims (
    account      TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    holder       TEXT    NOT NULL,
    expires_ms   INTEGER NOT NULL,
    PRIMARY KEY (account, key)
);
