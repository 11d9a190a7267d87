-- The whole schema of runs.db, as the migrations in migrations/ build it.
-- tests/unit/test_schema.py checks that the two agree. Times are ms since the epoch.

-- owner: the supervisor holding a running run (PostgreSQL; NULL on SQLite).
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
    wake_at          INTEGER,
    deadline_at      INTEGER,
    waiting_for      TEXT,
    claim_token      INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    owner            INTEGER,
    traceparent      TEXT,
    parent_run_id    TEXT,
    parent_step      TEXT,
    concurrency_key  TEXT
) STRICT;

-- The scheduler's one timer reads MIN(wake_at) and MIN(deadline_at); both
-- are NULL once a run is finished, so finished runs cost these indexes nothing.
CREATE INDEX runs_wake ON runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, created_at);
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_key ON runs (workflow, concurrency_key) WHERE concurrency_key IS NOT NULL;
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

-- One row per event a parked run waits for (several for step.wait_for_any).
CREATE TABLE waits (
    run_id     TEXT NOT NULL,
    event      TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    schema     TEXT,
    any_of     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, event)
) STRICT;

CREATE INDEX waits_event ON waits (event);

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
-- Human approvals: one row per request, and its append-only history.

CREATE TABLE approvals (
    key            TEXT PRIMARY KEY,
    run_id         TEXT NOT NULL,
    step_key       TEXT NOT NULL,
    workflow       TEXT NOT NULL,
    status         TEXT NOT NULL,
    summary        TEXT NOT NULL,
    data           BLOB NOT NULL,
    value          BLOB NOT NULL,
    approvers      TEXT,
    required       INTEGER NOT NULL,
    approved_by    TEXT NOT NULL DEFAULT '[]',
    decision       BLOB,
    schema         TEXT,
    on_timeout     TEXT NOT NULL,
    remind_every   INTEGER,
    escalate_to    TEXT,
    created_at     INTEGER NOT NULL,
    deadline_at    INTEGER,
    remind_at      INTEGER,
    escalate_at    INTEGER,
    decided_at     INTEGER,
    timer_at       INTEGER
) STRICT;

-- The scheduler's timer also reads MIN(timer_at): the next deadline, reminder or
-- escalation of any pending request. NULL once decided.
CREATE INDEX approvals_timer ON approvals (timer_at) WHERE timer_at IS NOT NULL;
CREATE INDEX approvals_pending ON approvals (status, created_at);
CREATE INDEX approvals_run ON approvals (run_id);

CREATE TABLE approval_history (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL,
    at          INTEGER NOT NULL,
    event       TEXT NOT NULL,
    actor       TEXT,
    value       BLOB,
    original    BLOB,
    reason      TEXT,
    decision_id TEXT
) STRICT;

CREATE INDEX approval_history_key ON approval_history (key, id);

-- Approval events waiting for delivery to the webhook and to the app's notifiers (the
-- targets): a durable outbox, delivered at least once, in order per request and target.
CREATE TABLE outbox (
    id           TEXT NOT NULL,
    target       TEXT NOT NULL,
    seq          INTEGER NOT NULL UNIQUE,
    key          TEXT NOT NULL,
    body         BLOB NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    last_error   TEXT,
    delivered_at INTEGER,
    PRIMARY KEY (id, target)
) STRICT;

CREATE INDEX outbox_due ON outbox (next_at) WHERE delivered_at IS NULL;

-- API tokens for the HTTP surface: only a token's SHA-256 is kept, never the token.
CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- The supervisors serving this app, each renewing its heartbeat. On SQLite there is one
-- (the data dir's lock says so); the table lets `tako status` read alike on both backends.
CREATE TABLE supervisors (
    id           INTEGER PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    workers      INTEGER NOT NULL DEFAULT 0,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) STRICT;

-- Cron schedules (@workflow(schedule=...)): each scheduled workflow's next tick and the
-- last one it started, kept across restarts, so missed ticks are caught up once.
CREATE TABLE schedules (
    workflow     TEXT PRIMARY KEY,
    expression   TEXT NOT NULL,
    timezone     TEXT NOT NULL,
    catch_up     TEXT NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout_ms   INTEGER,
    next_at      INTEGER NOT NULL,
    last_tick    INTEGER
) STRICT;

CREATE INDEX schedules_next ON schedules (next_at);
