-- Concurrency keys (@workflow(key=..., key_concurrency=M)): a run's key, computed by the
-- worker from its payload when the run first starts; NULL until then.
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
CREATE INDEX runs_key ON runs (workflow, concurrency_key) WHERE concurrency_key IS NOT NULL;
