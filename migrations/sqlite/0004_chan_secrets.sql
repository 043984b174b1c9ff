-- 0004: a chan's passphrase is a secret.
--
-- A chan's private keys derive from its passphrase, so the passphrase is a
-- private key too. It is kept only sealed (AES-256-GCM under the secret
-- key, like signing_key and encryption_key) in chan_passphrase; labels and
-- folder names come from a name the user chooses, never from the passphrase.
--
-- Before, the passphrase was stored in clear: in the label
-- ("[chan] <passphrase>"), in the chan's folder ("Chans/<passphrase>") and
-- in the To: display name of every post filed there. Sealing needs the
-- secret key, which SQL does not have: the settings row chan_secrets_pending
-- asks the next Open to seal those passphrases, give the chans a neutral
-- name, rename their folders and rewrite the posts, in one transaction that
-- deletes the row. It is only written when there is a chan to migrate.

ALTER TABLE identities ADD COLUMN chan_passphrase BLOB;   -- AES-256-GCM sealed; chans only

INSERT INTO settings (name, value)
SELECT 'chan_secrets_pending', x'01' WHERE EXISTS (SELECT 1 FROM identities WHERE kind = 'chan');
