-- devext store, version 6: the process that claimed an idempotency key, and indexes for
-- retention.
--
-- `idempotency.claimant` names the process running the request (random per process): one
-- process serves an SQLite store, so after a crash or a restart a claim of another process that
-- never finished answers "outcome unknown" at once instead of "still running". Claims made
-- before this migration have none and count as another process's.
--
-- Indexes for retention (`devext serve` prunes, in the background and
-- in small batches, audit entries, idempotency records and expired sessions older than their
-- retention period): each batch finds its oldest rows by time without scanning the table.

CREATE INDEX audit_at ON audit(at);
CREATE INDEX idempotency_created ON idempotency(created_at);
CREATE INDEX sessions_last_seen ON sessions(last_seen_at);
CREATE INDEX sessions_created ON sessions(created_at);

ALTER TABLE idempotency ADD COLUMN claimant TEXT;
