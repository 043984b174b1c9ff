-- 0011: spam control as PyBitmessage users know it.
--
-- users.sender_list_mode is PyBitmessage's blackwhitelist setting, per
-- user: 'black' drops mail from the enabled entries of the user's
-- blacklist, 'white' accepts mail only from the enabled entries of the
-- user's whitelist. sender_lists holds both lists.
--
-- identities.mailing_list and mailing_list_name are PyBitmessage's
-- mailinglist and mailinglistname: a msg received at such an address is
-- broadcast again from it. outbox_once records the objects already
-- relayed, so an object processed again enqueues no second broadcast.
ALTER TABLE users ADD COLUMN sender_list_mode TEXT NOT NULL DEFAULT 'black'
    CHECK (sender_list_mode IN ('black', 'white'));

CREATE TABLE sender_lists (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('black', 'white')),
    address    TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX sender_lists_entry ON sender_lists (user_id, kind, address);

ALTER TABLE identities ADD COLUMN mailing_list INTEGER NOT NULL DEFAULT 0;
ALTER TABLE identities ADD COLUMN mailing_list_name TEXT NOT NULL DEFAULT '';

CREATE TABLE outbox_once (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key     BLOB NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) STRICT;
CREATE INDEX outbox_once_key ON outbox_once (key);
CREATE INDEX outbox_once_at ON outbox_once (at);
