-- devext store, version 3: each audit entry names the HTTP request that made it (the id the
-- service answers in `x-request-id` and logs with every line of that request), so one request
-- can be followed from the log to the audit log and back. Entries made before have none.

ALTER TABLE audit ADD COLUMN request_id TEXT;
