-- Encrypted credentials at rest (paid_core::SecretStore). The store keeps
-- opaque ciphertext and the id of the key that made it; it never sees a key
-- or a plaintext.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    ciphertext  BLOB NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    updated_at  INTEGER NOT NULL
) STRICT;
