-- devext store, version 5: bulk jobs and their items.
--
-- A job is one operation of one plugin with one input over a set of devices, snapshotted at
-- creation into `job_items` (one row per device, `pos` = its place in the selection). An item
-- is `pending`, `running` (claimed by the replica `lease_owner` until `lease_until`, renewed
-- while it runs: in flight), or has its outcome: `ok`, `failed`, `skipped` (cancelled before
-- it ran) or `unknown` (an action interrupted in flight: never retried). Times are RFC 3339
-- UTC text; JSON documents are text.

CREATE TABLE jobs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    org_id        INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    plugin        TEXT NOT NULL,
    op            TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('view', 'action')),
    input         TEXT NOT NULL,
    selection     TEXT NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('queued', 'running', 'done', 'cancelled', 'failed')),
    total         INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    key_id        TEXT,
    user_id       TEXT,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    error_kind    TEXT,
    error_message TEXT
);
CREATE INDEX jobs_org ON jobs(org_id, seq);
CREATE INDEX jobs_state ON jobs(state, seq);
CREATE INDEX jobs_finished ON jobs(finished_at);

CREATE TABLE job_items (
    job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    pos           INTEGER NOT NULL,
    device_id     TEXT NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('pending', 'running', 'ok', 'failed', 'skipped', 'unknown')),
    lease_owner   TEXT,
    lease_until   TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    error_kind    TEXT,
    error_message TEXT,
    result        TEXT,
    finished_at   TEXT,
    PRIMARY KEY (job_id, pos)
);
CREATE INDEX job_items_state ON job_items(job_id, state, pos);
CREATE INDEX job_items_running ON job_items(state, lease_until);
