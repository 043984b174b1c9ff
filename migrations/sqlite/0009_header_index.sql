-- 0009: the header index.
--
-- One row per body (so copies of a message share it, as they share the
-- body): what IMAP serves and searches from a message's header, kept apart
-- from the message bytes so that header FETCH and header SEARCH read no
-- bodies.
--
--   header          the header section exactly as stored: the bytes up to
--                   and including the blank line that ends it (the whole
--                   message when it has none); BODY[HEADER], RFC822.HEADER,
--                   BODY[HEADER.FIELDS (...)] and ENVELOPE are served from it
--   envelope        the IMAP ENVELOPE derived from the header, encoded by
--                   mailmap (headerindex.go, packEnvelope)
--   hdr_from …      the decoded values (RFC 2047 words and charsets undone,
--   hdr_subject     as SEARCH matches them) of every From, To, Cc, Bcc and
--                   Subject field, in order, each as a uvarint length and
--                   its bytes; NULL when the message has no such field
--   format          the version of the code that built the row; a row of
--                   another version is built again
--
-- A header section over 256 KiB (a message with no blank line is all
-- header) is not copied: its row has only body_id and format, and readers
-- build its entry from the body.
--
-- Rows are written with the body (append, delivery, rewrite of a chan
-- post). Bodies stored before this migration get theirs from a background
-- backfill after Open (mailmap/headerindex.go); until then readers build
-- the missing rows from the body.

CREATE TABLE message_headers (
    body_id     INTEGER PRIMARY KEY REFERENCES bodies (id) ON DELETE CASCADE,
    format      INTEGER NOT NULL,
    header      BLOB,
    envelope    BLOB,
    hdr_from    BLOB,
    hdr_to      BLOB,
    hdr_cc      BLOB,
    hdr_bcc     BLOB,
    hdr_subject BLOB
) STRICT;
