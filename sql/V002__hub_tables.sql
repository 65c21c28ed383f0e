-- Hub tables: state omshub keeps for itself, prefixed omshub_ so a connector's table filter and a
-- person reading SHOW TABLES can tell them from the OMS tables. The migrations bookkeeping table
-- (omshub_schema_migrations) is not here: the runner creates it before it can read any file.

-- Debezium's signalling table shape (id, type, data), kept identical so the same ad-hoc
-- incremental snapshot signals work against production Debezium and the embedded connector:
-- INSERT INTO omshub_signal VALUES ('<uuid>', 'execute-snapshot',
--   '{"data-collections": ["oms.oms_order"], "type": "incremental"}');
-- The snapshot's low/high watermarks are written here too, which is why data is TEXT.
CREATE TABLE IF NOT EXISTS omshub_signal (
    id VARCHAR(64) NOT NULL,
    type VARCHAR(32) NOT NULL,
    data TEXT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='Debezium-style signals (execute-snapshot, watermarks)';

-- Dedupe keys for at-least-once consumers: the key is inserted in the same transaction as the
-- effect, and a duplicate-key error means the event was already handled. processed_at is indexed
-- so old keys can be pruned in ranges.
CREATE TABLE IF NOT EXISTS omshub_processed_event (
    consumer VARCHAR(64) NOT NULL,
    event_key VARCHAR(255) NOT NULL,
    processed_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (consumer, event_key),
    KEY idx_processed_at (processed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='event keys a consumer has already applied';
