-- The ledger: one row per examined operation, unique on (account, uid).
-- Amounts are canonical decimal text (SQLite has no exact decimal type); times are epoch ms UTC.
CREATE TABLE operations (
    account        TEXT    NOT NULL,
    uid            TEXT    NOT NULL,
    reference      TEXT    NOT NULL DEFAULT '',
    sales_order    TEXT,
    status_code    INTEGER,
    amount         TEXT,
    currency       TEXT,
    decision       TEXT    NOT NULL,
    reason         TEXT    NOT NULL DEFAULT '',
    erp_entry      TEXT,
    op_created_ms  INTEGER,
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    times_seen     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (account, uid)
);

-- "Has this order already been booked by us?" is asked before every booking.
CREATE INDEX operations_booked_by_order
    ON operations (account, sales_order)
    WHERE decision IN ('booked_initial', 'booked_additional');

CREATE INDEX operations_by_decision ON operations (account, decision, last_seen_ms);
