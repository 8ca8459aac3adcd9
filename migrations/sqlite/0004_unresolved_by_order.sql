-- "Is an earlier payment of this order still unresolved?" is asked before every booking, and a
-- trigger re-examines an order's unresolved payments with it (oldest first, whatever failed).
CREATE INDEX operations_unresolved_by_order
    ON operations (account, sales_order, op_created_ms)
    WHERE decision IN ('error', 'waiting', 'order_missing', 'order_not_payable');
