-- A run may wait for the first of several events (step.wait_for_any): one row per
-- event it waits for; `any_of` = 1 makes the step's result name the event that came.
CREATE TABLE waits (
    run_id     TEXT NOT NULL,
    event      TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    schema     TEXT,
    any_of     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, event)
) STRICT;

INSERT INTO waits (run_id, event, step_key, schema)
    SELECT run_id, event, step_key, schema FROM waiters;
DROP TABLE waiters;

CREATE INDEX waits_event ON waits (event);
