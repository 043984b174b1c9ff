-- 0007: the highest Bitmessage message encoding seen from each address.
--
-- bmgate sends encoding 2 (subject and body only), which every client reads,
-- unless a mail carries something only encoding 3 (extended) can carry and
-- the recipient is known to read it: a local identity, or an address from
-- which a msg in encoding 3 has arrived (docs/compatibility.md, "Which
-- encoding bmgate sends"). This table is that knowledge: one row per sender
-- address (and per chan address, for posts seen in a chan), raised by every
-- msg or broadcast decrypted, never lowered. updated_at is unix microseconds.

CREATE TABLE peer_encodings (
    address      TEXT    PRIMARY KEY,
    max_encoding BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

-- Lookups of the outbox this version adds: a reply that names one of our
-- msgs by its inventory hash (<hex@domain>) finds the row that published
-- it, and a send waiting for a pubkey finds the request another row to the
-- same address already made (one getpubkey per address).
CREATE INDEX outbox_inv_hash ON outbox (inv_hash) WHERE inv_hash IS NOT NULL;
CREATE INDEX outbox_awaiting_to ON outbox (to_address) WHERE state = 'awaiting_pubkey';
