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
