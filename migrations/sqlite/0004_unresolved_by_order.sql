-- "Is an earlier payment of this order still unresolved?" is asked before every booking, and a
-- trigger re-examines an order's unresolved payments with it (oldest first, whatever failed).
-- Orders live in the one ERP: the questions are about the order, whatever account paid it.
CREATE INDEX operations_unresolved_by_order
    ON operations (sales_order, op_created_ms)
    WHERE decision IN ('order_missing', 'order_not_payable', 'waiting', 'error');

-- When a row became booked: only bookings made after a batch read the ERP can tell more than the
-- ERP itself (an entry cancelled in ERPNext must not make the order's next payment "additional").
ALTER TABLE operations ADD COLUMN booked_ms INTEGER;
CREATE INDEX operations_booked_by_order_any_account
    ON operations (sales_order, booked_ms)
    WHERE decision IN ('booked_initial', 'booked_additional');

-- A claim taken over from another holder remembers until when that holder's claim ran: its
-- creates may still commit up to erp.commit_horizon after it.
ALTER TABLE claims ADD COLUMN prev_expires_ms INTEGER;
