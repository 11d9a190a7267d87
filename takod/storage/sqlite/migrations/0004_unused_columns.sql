-- Columns nothing reads: crash attribution lives in the supervisor's memory (a run
-- in flight in two crashes in a row), and a wait's timeout is the run's wake_at.
ALTER TABLE runs DROP COLUMN crashes;
ALTER TABLE waiters DROP COLUMN timeout_at;
