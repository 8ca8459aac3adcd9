-- The reversals paysync made of refunded operations it had booked (see the SQLite migration 0009).
CREATE TABLE reversals (
    account     TEXT COLLATE "C" NOT NULL,
    uid         TEXT COLLATE "C" NOT NULL,
    refund_key  TEXT COLLATE "C" NOT NULL,
    amount      TEXT   NOT NULL,
    erp_entry   TEXT   NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (account, uid, refund_key)
);
