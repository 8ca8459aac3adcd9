-- The OAuth refresh token of each account that rotates one (see the SQLite migration 0007):
-- replaced only over the version it was read at (compare-and-set). The token is a secret.
CREATE TABLE oauth_tokens (
    account       TEXT COLLATE "C" PRIMARY KEY,
    refresh_token TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    seed          TEXT   NOT NULL,
    updated_ms    BIGINT NOT NULL
);
