-- The sweeper finds PENDING rows nobody finished by their last update, not their creation:
-- a row re-driven from RETRY is PENDING again with an old created_at but a fresh updated_at.
ALTER TABLE oms_order_push ADD KEY idx_status_updated (status, updated_at);
