-- Every decision paysync made for an operation, append-only (`operations` keeps only the
-- merged current row): when, on which trigger (sync, poll, webhook, rebook), what and why.
-- A decision that repeats the operation's last one (same trigger, decision, reason and entry: a
-- poll seeing a booked payment again) counts on that entry (`repeats`, `last_ms`) instead of
-- adding one. Read by `paysync explain`.
CREATE TABLE decision_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account     TEXT    NOT NULL,
    uid         TEXT    NOT NULL,
    decided_ms  INTEGER NOT NULL,
    run_trigger TEXT    NOT NULL,
    decision    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    erp_entry   TEXT,
    sales_order TEXT,
    amount      TEXT,
    repeats     INTEGER NOT NULL DEFAULT 1,
    last_ms     INTEGER NOT NULL
);
CREATE INDEX decision_history_of ON decision_history (account, uid, id);
