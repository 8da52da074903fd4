-- devext store, version 6: indexes for retention (`devext serve` prunes, in the background and
-- in small batches, audit entries, idempotency records and expired sessions older than their
-- retention period): each batch finds its oldest rows by time without scanning the table.

CREATE INDEX audit_at ON audit(at);
CREATE INDEX idempotency_created ON idempotency(created_at);
CREATE INDEX sessions_last_seen ON sessions(last_seen_at);
CREATE INDEX sessions_created ON sessions(created_at);
