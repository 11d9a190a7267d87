-- The supervisor holding a running run. One supervisor owns a runs.db, so on SQLite it
-- stays NULL; the column keeps the verbs the same SQL on SQLite and PostgreSQL.
ALTER TABLE runs ADD COLUMN owner INTEGER;
