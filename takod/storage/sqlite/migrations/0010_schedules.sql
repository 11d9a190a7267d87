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
