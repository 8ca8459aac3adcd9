-- The OAuth refresh token of each account that rotates one (MercadoLibre / Mercado Pago tokens
-- are single-use: every refresh returns a new one and kills the old). Replaced only over the
-- version it was read at (compare-and-set), so a stale write never overwrites a newer token.
-- `seed` fingerprints the `sync.toml` token this chain descends from. The token is a secret.
CREATE TABLE oauth_tokens (
    account       TEXT    PRIMARY KEY,
    refresh_token TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    seed          TEXT    NOT NULL,
    updated_ms    INTEGER NOT NULL
);
