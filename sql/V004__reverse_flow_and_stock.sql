-- Reverse-flow processing state and derived stock positions.
--
-- oms_order.fulfilment_hold: step 1 of the reverse flow pauses forward fulfilment of the order.
-- oms_reverse_order.effective_type: a CANCEL whose intercept failed continues as a REJECTION.
-- oms_reverse_order.reject_reason: why a reverse request was rejected (bad input); nothing is
-- pushed for it.
ALTER TABLE oms_order
    ADD COLUMN fulfilment_hold TINYINT(1) NOT NULL DEFAULT 0 COMMENT 'paused by a reverse request',
    ADD COLUMN hold_reason VARCHAR(64) NULL;
ALTER TABLE oms_reverse_order
    ADD COLUMN effective_type VARCHAR(16) NULL COMMENT 'the path actually taken',
    ADD COLUMN reject_reason VARCHAR(512) NULL;

-- The newest binlog position applied per (sku, warehouse): an older stock change (a replay, a
-- duplicate delivery) can never overwrite a newer one, whichever worker processes it.
CREATE TABLE IF NOT EXISTS omshub_stock_position (
    sku_code VARCHAR(32) NOT NULL,
    warehouse_code VARCHAR(16) NOT NULL,
    position VARCHAR(64) NOT NULL COMMENT 'binlog file:pos:row, zero-padded to sort as text',
    sellable INT NOT NULL,
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (sku_code, warehouse_code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='hub: last sellable-stock value sent per sku and warehouse';
