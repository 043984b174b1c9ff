-- bmgate schema v1 (PostgreSQL). Keep in step with sqlite/0001_init.sql.
-- Times are unix microseconds (BIGINT) in both dialects; NULL means "never".
-- uint64 protocol values (streams, versions, services, PoW parameters) are
-- stored bit-for-bit in BIGINT and may read negative in psql.

CREATE TABLE users (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT    NOT NULL,
    name_key         TEXT    NOT NULL UNIQUE,          -- lower-cased login name
    password_hash    TEXT    NOT NULL,                 -- argon2id, PHC string
    quota_bytes      BIGINT  NOT NULL DEFAULT 0,       -- 0 = unlimited
    used_bytes       BIGINT  NOT NULL DEFAULT 0,       -- sum of message sizes
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    delivery_reports BOOLEAN NOT NULL DEFAULT FALSE,
    next_uidvalidity BIGINT  NOT NULL,                 -- next UIDVALIDITY to hand out
    created_at       BIGINT  NOT NULL
);

CREATE TABLE identities (
    id                    BIGSERIAL PRIMARY KEY,
    user_id               BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address               TEXT    NOT NULL,
    label                 TEXT    NOT NULL DEFAULT '',
    kind                  TEXT    NOT NULL,
    signing_key           BYTEA   NOT NULL,            -- AES-256-GCM sealed
    encryption_key        BYTEA   NOT NULL,            -- AES-256-GCM sealed
    publish_pubkey        BOOLEAN NOT NULL,
    nonce_trials_per_byte BIGINT  NOT NULL,
    extra_bytes           BIGINT  NOT NULL,
    last_pubkey_sent      BIGINT,
    created_at            BIGINT  NOT NULL
);
-- A personal address belongs to one user; a chan may be joined by several
-- users of one server (its keys come from the chan's passphrase).
CREATE UNIQUE INDEX identities_user_address ON identities (user_id, address);
CREATE UNIQUE INDEX identities_normal_address ON identities (address) WHERE kind <> 'chan';
CREATE INDEX identities_address ON identities (address);

CREATE TABLE contacts (
    id      BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    alias   TEXT   NOT NULL,
    address TEXT   NOT NULL,
    UNIQUE (user_id, alias)
);

CREATE TABLE subscriptions (
    id      BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address TEXT   NOT NULL,
    label   TEXT   NOT NULL DEFAULT '',
    UNIQUE (user_id, address)
);

CREATE TABLE pubkeys (
    address               TEXT PRIMARY KEY,
    version               BIGINT NOT NULL,
    stream                BIGINT NOT NULL,
    bitfield              BIGINT NOT NULL,
    signing_key           BYTEA  NOT NULL,
    encryption_key        BYTEA  NOT NULL,
    nonce_trials_per_byte BIGINT NOT NULL,
    extra_bytes           BIGINT NOT NULL,
    source                TEXT   NOT NULL,
    learned_at            BIGINT NOT NULL
);

CREATE TABLE mailboxes (
    id             BIGSERIAL PRIMARY KEY,
    user_id        BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    special_use    TEXT    NOT NULL DEFAULT '',
    subscribed     BOOLEAN NOT NULL DEFAULT FALSE,
    uidvalidity    BIGINT  NOT NULL,
    uidnext        BIGINT  NOT NULL,
    highest_modseq BIGINT  NOT NULL,
    UNIQUE (user_id, name),
    UNIQUE (id, user_id)                               -- target of messages' owner check
);
CREATE UNIQUE INDEX mailboxes_special_use ON mailboxes (user_id, special_use) WHERE special_use <> '';

-- Message bytes, shared by the copies of one message (COPY and MOVE do not
-- duplicate them). A body is deleted when its last message goes.
CREATE TABLE bodies (
    id      BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    raw     BYTEA  NOT NULL
);
CREATE INDEX bodies_user ON bodies (user_id);

CREATE TABLE messages (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    mailbox_id    BIGINT  NOT NULL,
    uid           BIGINT  NOT NULL,
    body_id       BIGINT  NOT NULL REFERENCES bodies (id),
    flags         TEXT    NOT NULL DEFAULT '',         -- space-separated, sorted
    seen          BOOLEAN NOT NULL DEFAULT FALSE,      -- flags contains \Seen
    deleted       BOOLEAN NOT NULL DEFAULT FALSE,      -- flags contains \Deleted
    internal_date BIGINT  NOT NULL,
    size          BIGINT  NOT NULL,
    message_id    TEXT    NOT NULL DEFAULT '',
    modseq        BIGINT  NOT NULL,
    UNIQUE (mailbox_id, uid),
    FOREIGN KEY (mailbox_id, user_id) REFERENCES mailboxes (id, user_id) ON DELETE CASCADE
);
CREATE INDEX messages_body ON messages (body_id);
CREATE INDEX messages_user_message_id ON messages (user_id, message_id);

CREATE TABLE outbox (
    id             BIGSERIAL PRIMARY KEY,
    user_id        BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    from_address   TEXT    NOT NULL,
    to_address     TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    subject        BYTEA   NOT NULL,                   -- bytes: any encoding the gateway chose
    body           BYTEA   NOT NULL,
    encoding       BIGINT  NOT NULL,
    extra          BYTEA,
    message_id     TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    attempts       BIGINT  NOT NULL,
    next_attempt   BIGINT  NOT NULL,
    ttl            BIGINT  NOT NULL,                   -- nanoseconds
    ack_data       BYTEA,
    inv_hash       BYTEA,
    last_error     TEXT    NOT NULL,
    pow_duration   BIGINT  NOT NULL,                   -- nanoseconds
    created_at     BIGINT  NOT NULL,
    sent_at        BIGINT,
    acked_at       BIGINT,
    notify         BIGINT  NOT NULL,
    ret            TEXT    NOT NULL,
    env_id         TEXT    NOT NULL,
    orig_rcpt      TEXT    NOT NULL,
    delay_reported BOOLEAN NOT NULL,
    reported       BOOLEAN NOT NULL,
    original       BYTEA
);
CREATE INDEX outbox_due ON outbox (state, next_attempt);
CREATE INDEX outbox_ack_data ON outbox (ack_data) WHERE ack_data IS NOT NULL;
CREATE INDEX outbox_user ON outbox (user_id);

CREATE TABLE inventory (
    id        BIGSERIAL PRIMARY KEY,                   -- arrival order for the pending queue
    hash      BYTEA   NOT NULL UNIQUE,
    type      BIGINT  NOT NULL,
    version   BIGINT  NOT NULL,
    stream    BIGINT  NOT NULL,
    expires   BIGINT  NOT NULL,
    tag       BYTEA,
    raw       BYTEA   NOT NULL,
    processed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX inventory_stream_expires ON inventory (stream, expires);
CREATE INDEX inventory_expires ON inventory (expires);
CREATE INDEX inventory_pending ON inventory (id) WHERE NOT processed;
CREATE INDEX inventory_tag ON inventory (tag) WHERE tag IS NOT NULL;

CREATE TABLE known_nodes (
    addr      TEXT             NOT NULL,
    stream    BIGINT           NOT NULL,
    services  BIGINT           NOT NULL,
    last_seen BIGINT           NOT NULL,
    rating    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (addr, stream)
);
CREATE INDEX known_nodes_seen ON known_nodes (stream, last_seen);

-- Store-wide values (e.g. the sealed value that proves the secret key).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
