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
