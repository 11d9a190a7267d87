-- An app's runs in PostgreSQL, in a schema of its own (tako_<app>), the same tables as
-- runs.db. Times are ms since the epoch, read from the database's clock.

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    status           TEXT NOT NULL,
    payload          BYTEA NOT NULL,
    result           BYTEA,
    error            TEXT,
    traceback        TEXT,
    attempts         INTEGER NOT NULL DEFAULT 1,
    max_attempts     INTEGER NOT NULL,
    wake_at          BIGINT,
    deadline_at      BIGINT,
    waiting_for      TEXT,
    claim_token      BIGINT NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner            BIGINT,  -- the supervisor holding it while running (its lease)
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);

CREATE INDEX runs_wake ON runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, created_at);
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX runs_owner ON runs (owner) WHERE owner IS NOT NULL;

CREATE TABLE steps (
    run_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    result      BYTEA,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 1,
    seq         INTEGER NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    wake_at     BIGINT,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE waiters (
    run_id   TEXT PRIMARY KEY,
    event    TEXT NOT NULL,
    step_key TEXT NOT NULL,
    schema   TEXT
);

CREATE INDEX waiters_event ON waiters (event);

CREATE TABLE signals (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event      TEXT NOT NULL,
    run_id     TEXT,
    payload    BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX signals_event ON signals (event, id);
CREATE INDEX signals_expiry ON signals (expires_at);

CREATE TABLE approvals (
    key            TEXT PRIMARY KEY,
    run_id         TEXT NOT NULL,
    step_key       TEXT NOT NULL,
    workflow       TEXT NOT NULL,
    status         TEXT NOT NULL,
    summary        TEXT NOT NULL,
    data           BYTEA NOT NULL,
    value          BYTEA NOT NULL,
    approvers      TEXT,
    required       INTEGER NOT NULL,
    approved_by    TEXT NOT NULL DEFAULT '[]',
    decision       BYTEA,
    schema         TEXT,
    on_timeout     TEXT NOT NULL,
    remind_every   BIGINT,
    escalate_to    TEXT,
    created_at     BIGINT NOT NULL,
    deadline_at    BIGINT,
    remind_at      BIGINT,
    escalate_at    BIGINT,
    decided_at     BIGINT,
    timer_at       BIGINT
);

CREATE INDEX approvals_timer ON approvals (timer_at) WHERE timer_at IS NOT NULL;
CREATE INDEX approvals_pending ON approvals (status, created_at);
CREATE INDEX approvals_run ON approvals (run_id);

CREATE TABLE approval_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key         TEXT NOT NULL,
    at          BIGINT NOT NULL,
    event       TEXT NOT NULL,
    actor       TEXT,
    value       BYTEA,
    original    BYTEA,
    reason      TEXT,
    decision_id TEXT
);

CREATE INDEX approval_history_key ON approval_history (key, id);

CREATE TABLE outbox (
    id           TEXT NOT NULL,
    target       TEXT NOT NULL,
    seq          BIGINT NOT NULL UNIQUE,
    key          TEXT NOT NULL,
    body         BYTEA NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    last_error   TEXT,
    delivered_at BIGINT,
    PRIMARY KEY (id, target)
);

CREATE INDEX outbox_due ON outbox (next_at) WHERE delivered_at IS NULL;

CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The supervisors serving this app: each renews its heartbeat; one silent past its
-- lease is gone, and the runs it held go back to the queue.
CREATE TABLE supervisors (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    workers      INTEGER NOT NULL DEFAULT 0,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
