-- The reversals paysync made of refunded operations it had booked (`reverse_refunds`): one row
-- per refund, naming the "Pay" entry whose reference_no is `<uid>:refund:<refund_key>`.
CREATE TABLE reversals (
    account     TEXT    NOT NULL,
    uid         TEXT    NOT NULL,
    refund_key  TEXT    NOT NULL,
    amount      TEXT    NOT NULL,
    erp_entry   TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (account, uid, refund_key)
);
