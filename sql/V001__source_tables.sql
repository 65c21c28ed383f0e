-- Source tables: the rows upstream systems (OMS, reverse WS, WMS, customer service) write.
-- omshub only reads these through the binlog, except oms_order_push, whose status it writes back.
--
-- Conventions for every migration file in sql/:
--   * created in the connection's current database (never a hard-coded database name), so the same
--     files serve the embedded MariaDB 10.11, MySQL 8.4 and scratch test databases;
--   * CREATE TABLE IF NOT EXISTS, because MySQL DDL commits implicitly: if a file fails half way,
--     fixing the failing statement and re-running must not trip over the tables already made;
--   * utf8mb4_unicode_ci, the newest utf8mb4 collation both MariaDB 10.11 and MySQL 8.4 know;
--   * no CHECK constraints on amounts, quantities or statuses: the hub must turn bad rows
--     (negative quantities, unknown statuses) into FAILED pushes with a readable error, and tests
--     need to be able to write such rows;
--   * a statement ends with ';' at the end of a line. Applied files are immutable (checksummed):
--     change the schema with a new V<next>__<what>.sql file.

CREATE TABLE IF NOT EXISTS oms_order (
    id BIGINT NOT NULL AUTO_INCREMENT,
    order_no VARCHAR(32) NOT NULL COMMENT 'business key, e.g. SO20260302000001',
    user_id BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL DEFAULT 'CREATED'
        COMMENT 'CREATED, PAID, SENT_TO_WMS, SHIPPED, SIGNED, CANCELLED, CLOSED',
    direct_ship TINYINT(1) NOT NULL DEFAULT 0 COMMENT 'supplier ships from origin (产地直发)',
    presale TINYINT(1) NOT NULL DEFAULT 0 COMMENT 'presale order (预售)',
    warehouse_code VARCHAR(16) NOT NULL,
    supplier_code VARCHAR(32) NULL COMMENT 'set when direct_ship = 1',
    total_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00 COMMENT 'sum of line amounts before discounts',
    discount_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00 COMMENT 'promotion discount',
    coupon_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00,
    freight_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00,
    pay_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00
        COMMENT 'total - discount - coupon + freight',
    coupon_id BIGINT NULL,
    paid_at DATETIME(3) NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_order_no (order_no),
    KEY idx_user_id (user_id),
    KEY idx_status_updated (status, updated_at),
    KEY idx_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='orders (order header)';

CREATE TABLE IF NOT EXISTS oms_order_item (
    id BIGINT NOT NULL AUTO_INCREMENT,
    order_no VARCHAR(32) NOT NULL,
    line_no INT NOT NULL,
    sku_code VARCHAR(32) NOT NULL,
    sku_name VARCHAR(128) NOT NULL,
    quantity INT NOT NULL,
    unit_price DECIMAL(12,2) NOT NULL,
    line_amount DECIMAL(12,2) NOT NULL COMMENT 'unit_price * quantity',
    discount_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00 COMMENT 'share of the order discount',
    coupon_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00 COMMENT 'share of the order coupon',
    freight_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00 COMMENT 'share of the order freight',
    pay_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00
        COMMENT 'line - discount - coupon + freight; lines sum to the order pay_amount',
    refunded_qty INT NOT NULL DEFAULT 0,
    refunded_amount DECIMAL(12,2) NOT NULL DEFAULT 0.00,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_order_line (order_no, line_no),
    KEY idx_sku_code (sku_code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='order lines, amounts after allocation (分摊)';

CREATE TABLE IF NOT EXISTS oms_reverse_order (
    id BIGINT NOT NULL AUTO_INCREMENT,
    reverse_no VARCHAR(32) NOT NULL,
    order_no VARCHAR(32) NOT NULL,
    reverse_type ENUM('CANCEL','SALES_RETURN','REJECTION') NOT NULL,
    need_pickup TINYINT(1) NOT NULL DEFAULT 0 COMMENT 'sales return needs a courier (TMS)',
    status VARCHAR(24) NOT NULL DEFAULT 'CREATED',
    reason VARCHAR(255) NULL,
    refund_amount DECIMAL(12,2) NULL COMMENT 'computed by the reverse-flow processor',
    step_log JSON NULL COMMENT 'the processor records each finished step here',
    requester VARCHAR(32) NOT NULL COMMENT 'system that asked: CS, APP, REVERSE_WS, ...',
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_reverse_no (reverse_no),
    KEY idx_order_no (order_no),
    KEY idx_status_updated (status, updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='reverse requests: cancel (取消), sales return (销退), rejection (拒收)';

CREATE TABLE IF NOT EXISTS oms_reverse_item (
    id BIGINT NOT NULL AUTO_INCREMENT,
    reverse_no VARCHAR(32) NOT NULL,
    order_no VARCHAR(32) NOT NULL,
    line_no INT NOT NULL COMMENT 'the oms_order_item line being reversed',
    sku_code VARCHAR(32) NOT NULL,
    quantity INT NOT NULL,
    refund_amount DECIMAL(12,2) NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_reverse_line (reverse_no, line_no),
    KEY idx_order_no (order_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='reverse request lines';

CREATE TABLE IF NOT EXISTS oms_order_push (
    id BIGINT NOT NULL AUTO_INCREMENT,
    order_no VARCHAR(32) NOT NULL,
    reverse_id BIGINT NULL COMMENT 'oms_reverse_order.id when the push belongs to a reverse flow',
    push_type VARCHAR(32) NOT NULL COMMENT 'WMS_RETURN, FMS_REFUND_APPLY, ... (DESIGN section 5)',
    payload JSON NULL,
    status VARCHAR(16) NOT NULL DEFAULT 'PENDING'
        COMMENT 'PENDING, DONE, RETRY, FAILED, CANCELLED',
    attempts INT NOT NULL DEFAULT 0,
    next_retry_at DATETIME(3) NULL COMMENT 'UTC; when the sweeper may re-drive a RETRY row',
    last_error VARCHAR(1024) NULL,
    parent_id BIGINT NULL COMMENT 'the push whose completion inserted this follow-up push',
    idempotency_key VARCHAR(128) NOT NULL COMMENT 'sent as the Idempotency-Key header',
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_idempotency_key (idempotency_key),
    KEY idx_status_next_retry (status, next_retry_at),
    KEY idx_status_created (status, created_at),
    KEY idx_order_no (order_no),
    KEY idx_parent_id (parent_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='outbox of pushes to downstream systems, read from the binlog';

CREATE TABLE IF NOT EXISTS wms_inv (
    id BIGINT NOT NULL AUTO_INCREMENT,
    sku_code VARCHAR(32) NOT NULL,
    warehouse_code VARCHAR(16) NOT NULL,
    on_hand INT NOT NULL DEFAULT 0,
    occupied INT NOT NULL DEFAULT 0 COMMENT 'reserved by orders, not yet picked',
    safety INT NOT NULL DEFAULT 0 COMMENT 'safety stock never offered for sale',
    version BIGINT NOT NULL DEFAULT 0 COMMENT 'bumped by every writer',
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_sku_warehouse (sku_code, warehouse_code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='warehouse stock per sku (WMS)';

CREATE TABLE IF NOT EXISTS cs_cancel_application (
    id BIGINT NOT NULL AUTO_INCREMENT,
    application_no VARCHAR(32) NOT NULL,
    order_no VARCHAR(32) NOT NULL,
    step VARCHAR(32) NOT NULL COMMENT 'how far customer service got',
    status VARCHAR(16) NOT NULL,
    reason VARCHAR(255) NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_application_no (application_no),
    KEY idx_order_no (order_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='customer-service cancel applications (取消申请)';
