-- API tokens for the HTTP surface: only a token's SHA-256 is kept, never the token.

CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
