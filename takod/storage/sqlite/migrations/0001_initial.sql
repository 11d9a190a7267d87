-- The whole schema of runs.db, as the migrations in migrations/ build it.
-- tests/unit/test_schema.py checks that the two agree. Times are ms since the epoch.

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    status           TEXT NOT NULL,
    payload          BLOB NOT NULL,
    result           BLOB,
    error            TEXT,
    traceback        TEXT,
    attempts         INTEGER NOT NULL DEFAULT 1,
    max_attempts     INTEGER NOT NULL,
    crashes          INTEGER NOT NULL DEFAULT 0,
    wake_at          INTEGER,
    deadline_at      INTEGER,
    waiting_for      TEXT,
    claim_token      INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
) STRICT;

-- The scheduler's one timer reads MIN(wake_at) and MIN(deadline_at); both
-- are NULL once a run is finished, so finished runs cost these indexes nothing.
CREATE INDEX runs_wake ON runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, created_at);
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE steps (
    run_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    result      BLOB,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 1,
    seq         INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    wake_at     INTEGER,
    PRIMARY KEY (run_id, key)
) STRICT, WITHOUT ROWID;

-- One row per run parked on a signal.
CREATE TABLE waiters (
    run_id     TEXT PRIMARY KEY,
    event      TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    timeout_at INTEGER,
    schema     TEXT
) STRICT;

CREATE INDEX waiters_event ON waiters (event);

-- Signals that found no waiter, kept until consumed once or expired.
CREATE TABLE signals (
    id         INTEGER PRIMARY KEY,
    event      TEXT NOT NULL,
    run_id     TEXT,
    payload    BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX signals_event ON signals (event, id);
CREATE INDEX signals_expiry ON signals (expires_at);
