-- The trace context (W3C traceparent) of the caller that started the run: its spans
-- join the caller's trace, however long the run sleeps in between.
ALTER TABLE runs ADD COLUMN traceparent TEXT;
