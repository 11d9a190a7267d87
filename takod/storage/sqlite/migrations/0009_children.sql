-- Child runs (step.invoke, step.start_child): the run that started a run, and the step
-- of that run waiting for it to finish (NULL for a child nobody waits for).
ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
ALTER TABLE runs ADD COLUMN parent_step TEXT;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
