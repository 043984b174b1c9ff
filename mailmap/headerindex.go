package mailmap

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decoded values as imapd's SEARCH decodes them
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// MessageHeader is what the header index keeps of a message (table
// message_headers): enough to answer ENVELOPE, BODY[HEADER],
// BODY[HEADER.FIELDS (…)], RFC822.HEADER and the header criteria of SEARCH
// without reading the message.
type MessageHeader struct {
	// Header is the header section exactly as stored: raw[:HeaderEnd(raw)].
	// Parsing it gives what parsing the whole message gives (a header
	// parser stops at the first blank line, which is at or before its end).
	Header []byte
	// From, To, Cc, Bcc and Subject hold the decoded values of every field
	// of that name, in order: RFC 2047 encoded words and charsets undone,
	// the raw value where that fails (what go-message's
	// HeaderFields.Text, falling back to Value, gives). Nil when the
	// message has no such field.
	From, To, Cc, Bcc, Subject []string
	// Envelope is the message's IMAP ENVELOPE, as go-imap's
	// imapserver.ExtractEnvelope derives it from the header.
	Envelope Envelope
}

// Envelope is the IMAP ENVELOPE of a message (RFC 9051 §7.5.2), field for
// field go-imap's imap.Envelope, without tying the store's interface to
// that library. Address lists are nil when empty.
type Envelope struct {
	Date                               time.Time // zero: none, or not parseable
	Subject                            string
	From, Sender, ReplyTo, To, Cc, Bcc []Address
	InReplyTo                          []string
	MessageID                          string
}

// Address is one address of an Envelope.
type Address struct {
	Name, Mailbox, Host string
}

// HeaderParts says which parts of a MessageHeader a reader wants; the
// others are left zero (and not read from the database).
type HeaderParts uint8

const (
	HeaderSection  HeaderParts = 1 << iota // MessageHeader.Header
	HeaderEnvelope                         // MessageHeader.Envelope
	HeaderFrom                             // MessageHeader.From
	HeaderTo                               // MessageHeader.To
	HeaderCc                               // MessageHeader.Cc
	HeaderBcc                              // MessageHeader.Bcc
	HeaderSubject                          // MessageHeader.Subject

	HeaderDecoded = HeaderFrom | HeaderTo | HeaderCc | HeaderBcc | HeaderSubject
	HeaderAll     = HeaderSection | HeaderEnvelope | HeaderDecoded
)

// DecodedPart is the part holding one of IndexedFields (canonical
// spelling), or 0.
func DecodedPart(key string) HeaderParts {
	switch key {
	case "From":
		return HeaderFrom
	case "To":
		return HeaderTo
	case "Cc":
		return HeaderCc
	case "Bcc":
		return HeaderBcc
	case "Subject":
		return HeaderSubject
	}
	return 0
}

// IndexedFields are the fields MessageHeader keeps decoded, in canonical
// spelling (net/textproto.CanonicalMIMEHeaderKey).
var IndexedFields = []string{"From", "To", "Cc", "Bcc", "Subject"}

// Decoded returns the decoded values of one of IndexedFields (given in
// canonical spelling), and whether the field is indexed at all.
func (h *MessageHeader) Decoded(key string) ([]string, bool) {
	switch key {
	case "From":
		return h.From, true
	case "To":
		return h.To, true
	case "Cc":
		return h.Cc, true
	case "Bcc":
		return h.Bcc, true
	case "Subject":
		return h.Subject, true
	}
	return nil, false
}

// headerIndexVersion is the schema version that brings message_headers
// (migrations/*/0007_header_index.sql).
const headerIndexVersion = 7

// headerIndexFormat is the version of IndexHeader's output stored with each
// row. Change it when IndexHeader changes what it stores, and when an
// upgrade of go-imap (imapserver.ExtractEnvelope) or go-message (header
// parsing, RFC 2047 and charset decoding) changes what it computes: rows of
// another format are then built again (by readers on the fly, and by the
// backfill). Tests compare the index with the messages only for rows built
// by the code under test, so they cannot notice stale rows themselves.
const headerIndexFormat = 1

// HeaderEnd returns the offset just past the blank line that ends the
// header of raw, or len(raw) when there is none. imapd answers BODY[HEADER]
// and BODY[TEXT] with the two sides of it, and the index stores the first.
func HeaderEnd(raw []byte) int {
	if bytes.HasPrefix(raw, []byte("\r\n")) {
		return 2
	}
	if bytes.HasPrefix(raw, []byte("\n")) {
		return 1
	}
	crlf := bytes.Index(raw, []byte("\r\n\r\n"))
	lf := bytes.Index(raw, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf+2 <= lf):
		return crlf + 4
	case lf >= 0:
		return lf + 2
	}
	return len(raw)
}

// IndexHeader builds the index entry of a message from its bytes.
func IndexHeader(raw []byte) MessageHeader {
	head := raw[:HeaderEnd(raw)]
	ih := MessageHeader{Header: head}
	// A damaged header still yields the fields before the damage, as it
	// does for a reader of the whole message.
	th, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(head)))
	ih.Envelope = envelopeFrom(imapserver.ExtractEnvelope(th))
	h := mail.Header{Header: gomessage.Header{Header: th}}
	for _, key := range IndexedFields {
		var vals []string
		for f := h.FieldsByKey(key); f.Next(); {
			v, err := f.Text()
			if err != nil {
				v = f.Value()
			}
			vals = append(vals, v)
		}
		switch key {
		case "From":
			ih.From = vals
		case "To":
			ih.To = vals
		case "Cc":
			ih.Cc = vals
		case "Bcc":
			ih.Bcc = vals
		case "Subject":
			ih.Subject = vals
		}
	}
	return ih
}

func envelopeFrom(e *imap.Envelope) Envelope {
	addrs := func(l []imap.Address) []Address {
		if len(l) == 0 {
			return nil
		}
		out := make([]Address, len(l))
		for i, a := range l {
			out[i] = Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
		}
		return out
	}
	return Envelope{
		Date: e.Date, Subject: e.Subject,
		From: addrs(e.From), Sender: addrs(e.Sender), ReplyTo: addrs(e.ReplyTo),
		To: addrs(e.To), Cc: addrs(e.Cc), Bcc: addrs(e.Bcc),
		InReplyTo: e.InReplyTo, MessageID: e.MessageID,
	}
}

// packEnvelope encodes an envelope for the index: the date (a presence
// byte, then unix seconds, nanoseconds and the zone's offset, which is all
// ENVELOPE's date format shows), then strings as a uvarint length and their
// bytes, lists as a uvarint count and their items.
func packEnvelope(e Envelope) []byte {
	out := make([]byte, 0, 256)
	str := func(s string) {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	if e.Date.IsZero() {
		out = append(out, 0)
	} else {
		_, off := e.Date.Zone()
		out = append(out, 1)
		out = binary.AppendVarint(out, e.Date.Unix())
		out = binary.AppendUvarint(out, uint64(e.Date.Nanosecond()))
		out = binary.AppendVarint(out, int64(off))
	}
	str(e.Subject)
	for _, l := range [][]Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		out = binary.AppendUvarint(out, uint64(len(l)))
		for _, a := range l {
			str(a.Name)
			str(a.Mailbox)
			str(a.Host)
		}
	}
	out = binary.AppendUvarint(out, uint64(len(e.InReplyTo)))
	for _, id := range e.InReplyTo {
		str(id)
	}
	str(e.MessageID)
	return out
}

var errDamagedEnvelope = errors.New("damaged header index envelope")

func unpackEnvelope(b []byte) (Envelope, error) {
	var e Envelope
	bad := false
	uv := func() uint64 {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			bad = true
			return 0
		}
		b = b[k:]
		return v
	}
	sv := func() int64 {
		v, k := binary.Varint(b)
		if k <= 0 {
			bad = true
			return 0
		}
		b = b[k:]
		return v
	}
	str := func() string {
		n := uv()
		if bad || n > uint64(len(b)) {
			bad = true
			return ""
		}
		s := string(b[:n])
		b = b[n:]
		return s
	}
	count := func() int {
		n := uv()
		if n > uint64(len(b)) { // every item takes at least a byte
			bad = true
			return 0
		}
		return int(n)
	}
	if len(b) == 0 {
		return e, errDamagedEnvelope
	}
	hasDate := b[0]
	b = b[1:]
	if hasDate > 1 {
		return e, errDamagedEnvelope
	}
	if hasDate == 1 {
		sec, nsec, off := sv(), uv(), sv()
		e.Date = time.Unix(sec, int64(nsec)).In(time.FixedZone("", int(off)))
	}
	e.Subject = str()
	for _, l := range []*[]Address{&e.From, &e.Sender, &e.ReplyTo, &e.To, &e.Cc, &e.Bcc} {
		n := count()
		if n == 0 || bad {
			continue
		}
		*l = make([]Address, n)
		for i := range *l {
			(*l)[i] = Address{Name: str(), Mailbox: str(), Host: str()}
		}
	}
	if n := count(); n > 0 && !bad {
		e.InReplyTo = make([]string, n)
		for i := range e.InReplyTo {
			e.InReplyTo[i] = str()
		}
	}
	e.MessageID = str()
	if bad || len(b) != 0 {
		return Envelope{}, errDamagedEnvelope
	}
	return e, nil
}

// only keeps the given parts of h.
func (h MessageHeader) only(parts HeaderParts) MessageHeader {
	var out MessageHeader
	if parts&HeaderSection != 0 {
		out.Header = h.Header
	}
	if parts&HeaderEnvelope != 0 {
		out.Envelope = h.Envelope
	}
	if parts&HeaderFrom != 0 {
		out.From = h.From
	}
	if parts&HeaderTo != 0 {
		out.To = h.To
	}
	if parts&HeaderCc != 0 {
		out.Cc = h.Cc
	}
	if parts&HeaderBcc != 0 {
		out.Bcc = h.Bcc
	}
	if parts&HeaderSubject != 0 {
		out.Subject = h.Subject
	}
	return out
}

// packValues stores a field's values: nil (SQL NULL) for no field, else
// each value as a uvarint length and its bytes.
func packValues(vals []string) []byte {
	if vals == nil {
		return nil
	}
	n := 0
	for _, v := range vals {
		n += binary.MaxVarintLen64 + len(v)
	}
	out := make([]byte, 0, n)
	for _, v := range vals {
		out = binary.AppendUvarint(out, uint64(len(v)))
		out = append(out, v...)
	}
	return out
}

func unpackValues(b []byte, null bool) ([]string, error) {
	if null {
		return nil, nil
	}
	vals := []string{}
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("damaged header index value")
		}
		vals = append(vals, string(b[k:k+int(n)]))
		b = b[k+int(n):]
	}
	if len(vals) == 0 {
		return nil, errors.New("damaged header index value")
	}
	return vals, nil
}

// maxIndexedHeader bounds the header sections the index copies: a longer
// one (a message with no blank line is all header) is read from the body,
// so that no message takes twice its size, outside the quota.
const maxIndexedHeader = 256 << 10

// insertHeaderIndex writes (or rewrites) the index row of a body.
func insertHeaderIndex(ctx context.Context, w *wtx, bodyID int64, ih MessageHeader, replace bool) error {
	if len(ih.Header) > maxIndexedHeader {
		_, err := w.ExecContext(ctx, `INSERT INTO message_headers (body_id, format) VALUES ($1, $2)
			ON CONFLICT (body_id) DO UPDATE SET format = excluded.format, header = NULL, envelope = NULL, hdr_from = NULL,
			hdr_to = NULL, hdr_cc = NULL, hdr_bcc = NULL, hdr_subject = NULL`, bodyID, headerIndexFormat)
		if err != nil {
			return fmt.Errorf("index message header: %w", err)
		}
		return nil
	}
	conflict := `DO NOTHING`
	if replace {
		conflict = `DO UPDATE SET format = excluded.format, header = excluded.header, envelope = excluded.envelope, hdr_from = excluded.hdr_from,
			hdr_to = excluded.hdr_to, hdr_cc = excluded.hdr_cc, hdr_bcc = excluded.hdr_bcc, hdr_subject = excluded.hdr_subject`
	}
	_, err := w.ExecContext(ctx, `INSERT INTO message_headers (body_id, format, header, envelope, hdr_from, hdr_to, hdr_cc, hdr_bcc, hdr_subject)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (body_id) `+conflict,
		bodyID, headerIndexFormat, ih.Header, packEnvelope(ih.Envelope), packValues(ih.From), packValues(ih.To), packValues(ih.Cc),
		packValues(ih.Bcc), packValues(ih.Subject))
	if err != nil {
		return fmt.Errorf("index message header: %w", err)
	}
	return nil
}

// headerCols reads a message's index row (the wanted parts; NULL for the
// others), and its body only when the row is missing, of another format or
// without a header copy (a LEFT JOIN; the body's subquery runs only then).
func headerCols(parts HeaderParts) string {
	col := func(p HeaderParts, c string) string {
		if parts&p != 0 {
			return c
		}
		return "NULL"
	}
	return `m.uid, ` + col(HeaderSection, "h.header") + `, ` + col(HeaderEnvelope, "h.envelope") + `, ` +
		col(HeaderFrom, "h.hdr_from") + `, ` + col(HeaderTo, "h.hdr_to") + `, ` + col(HeaderCc, "h.hdr_cc") + `, ` +
		col(HeaderBcc, "h.hdr_bcc") + `, ` + col(HeaderSubject, "h.hdr_subject") + `,
	CASE WHEN h.format IS NULL OR h.format <> $3 OR h.header IS NULL THEN
		(SELECT b.raw FROM bodies b WHERE b.id = m.body_id AND b.user_id = m.user_id) END`
}

const headerFrom = ` FROM messages m LEFT JOIN message_headers h ON h.body_id = m.body_id
	WHERE m.user_id = $1 AND m.mailbox_id = $2`

// MessageHeaders reads the index entries of several messages of one
// mailbox, keyed by UID; UIDs with no message are absent. A UID list that
// is (nearly) a contiguous range, as FETCH 1:* read ahead in batches gives,
// is read as one range; others one query per 500 UIDs.
func (s *sqlStore) MessageHeaders(ctx context.Context, userID, mailboxID int64, uids []uint32, parts HeaderParts) (map[uint32]MessageHeader, error) {
	out := make(map[uint32]MessageHeader, len(uids))
	if len(uids) == 0 {
		return out, nil
	}
	if !s.headerIndex {
		raws, err := s.MessagesRaw(ctx, userID, mailboxID, uids)
		if err != nil {
			return nil, err
		}
		for uid, raw := range raws {
			out[uid] = IndexHeader(raw).only(parts)
		}
		return out, nil
	}
	lo, hi := slices.Min(uids), slices.Max(uids)
	if uint64(hi-lo) < 2*uint64(len(uids)) {
		want := make(map[uint32]bool, len(uids))
		for _, u := range uids {
			want[u] = true
		}
		st, err := s.prepared(ctx, `SELECT `+headerCols(parts)+headerFrom+` AND m.uid >= $4 AND m.uid <= $5`)
		if err != nil {
			return nil, fmt.Errorf("read message headers: %w", err)
		}
		rows, err := st.QueryContext(ctx, userID, mailboxID, headerIndexFormat, int64(lo), int64(hi))
		if err != nil {
			return nil, fmt.Errorf("read message headers: %w", err)
		}
		if err := s.scanHeaders(rows, out, want, parts); err != nil {
			return nil, err
		}
		return out, nil
	}
	for _, c := range chunks(uids) {
		args := make([]any, 0, 3+len(c))
		args = append(args, userID, mailboxID, headerIndexFormat)
		for _, u := range c {
			args = append(args, int64(u))
		}
		rows, err := s.rdb.QueryContext(ctx, `SELECT `+headerCols(parts)+headerFrom+` AND m.uid IN (`+placeholders(4, len(c))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("read message headers: %w", err)
		}
		if err := s.scanHeaders(rows, out, nil, parts); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// scanHeaders reads the rows of a headerCols query into out, keeping only
// the UIDs in want (nil: all), and closes them.
func (s *sqlStore) scanHeaders(rows *sql.Rows, out map[uint32]MessageHeader, want map[uint32]bool, parts HeaderParts) error {
	defer rows.Close()
	for rows.Next() {
		var (
			uid                                       int64
			header, env, from, to, cc, bcc, subj, raw []byte
		)
		if err := rows.Scan(&uid, &header, &env, &from, &to, &cc, &bcc, &subj, &raw); err != nil {
			return fmt.Errorf("read message headers: %w", err)
		}
		if want != nil && !want[uint32(uid)] {
			continue
		}
		if raw != nil {
			// Not indexed (stored before the index and not reached by
			// the backfill yet, or a header too long to copy): built
			// from the body.
			out[uint32(uid)] = IndexHeader(raw).only(parts)
			continue
		}
		var ih MessageHeader
		if parts&HeaderSection != 0 {
			ih.Header = header
			if ih.Header == nil {
				ih.Header = []byte{}
			}
		}
		var err error
		if parts&HeaderEnvelope != 0 {
			if ih.Envelope, err = unpackEnvelope(env); err != nil {
				return fmt.Errorf("read message headers: uid %d: %w", uid, err)
			}
		}
		for _, f := range []struct {
			part HeaderParts
			dst  *[]string
			b    []byte
		}{{HeaderFrom, &ih.From, from}, {HeaderTo, &ih.To, to}, {HeaderCc, &ih.Cc, cc}, {HeaderBcc, &ih.Bcc, bcc}, {HeaderSubject, &ih.Subject, subj}} {
			if parts&f.part == 0 {
				continue
			}
			if *f.dst, err = unpackValues(f.b, f.b == nil); err != nil {
				return fmt.Errorf("read message headers: uid %d: %w", uid, err)
			}
		}
		out[uint32(uid)] = ih
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read message headers: %w", err)
	}
	return nil
}

// backfillPrefix is how much of a body the backfill reads first: the
// header, in all but odd messages, without the attachments.
const backfillPrefix = 64 << 10

// headerPrefix reads enough of a body to index its header: its first
// backfillPrefix bytes when the header ends well inside them (IndexHeader
// looks at raw[:HeaderEnd(raw)] only, and a blank line found with 4 bytes
// to spare is where HeaderEnd of the whole body finds it too), else all of
// it.
func headerPrefix(ctx context.Context, w *wtx, id int64) ([]byte, error) {
	var prefix []byte
	var size int64
	if err := w.QueryRowContext(ctx, `SELECT substr(raw, 1, $2), length(raw) FROM bodies WHERE id = $1`,
		id, backfillPrefix).Scan(&prefix, &size); err != nil {
		return nil, err
	}
	if int64(len(prefix)) == size || HeaderEnd(prefix)+4 <= len(prefix) {
		return prefix, nil
	}
	var raw []byte
	err := w.QueryRowContext(ctx, `SELECT raw FROM bodies WHERE id = $1`, id).Scan(&raw)
	return raw, err
}

// headerBackfillDone is the settings row that records that every body has
// an index row of headerIndexFormat: from then on every write keeps it so
// and the backfill does not look again.
const headerBackfillDone = "header_index_backfilled"

// headerBackfillBatch is how many bodies one backfill transaction indexes.
const headerBackfillBatch = 200

// startHeaderBackfill indexes, in the background, the bodies stored before
// the header index existed (or by another format), a batch per write
// transaction, so that Open does not wait for it and writers (SQLite's
// single write connection) get their turn between batches. Readers build
// what is still missing on the fly meanwhile, so answers do not depend on
// its progress. It records completion in settings and then never runs
// again; on a crash or Close it resumes at the next Open. Several
// processes on one database may run it at once: a row another wrote
// first is kept.
func (s *sqlStore) startHeaderBackfill() {
	if !s.headerIndex {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopBackfill = func() { cancel(); <-done }
	go func() {
		defer close(done)
		if err := s.backfillHeaders(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("header index backfill stopped; it resumes at the next start", "err", err)
		}
	}()
}

func (s *sqlStore) backfillHeaders(ctx context.Context) error {
	var done []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, headerBackfillDone).Scan(&done)
	if err == nil && string(done) == fmt.Sprint(headerIndexFormat) {
		return nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	start := time.Now()
	var cursor, indexed int64
	for {
		var ids []int64
		err := s.write(ctx, func(w *wtx) error {
			ids = ids[:0]
			rows, err := w.QueryContext(ctx, `SELECT b.id FROM bodies b
				WHERE b.id > $1 AND NOT EXISTS (SELECT 1 FROM message_headers h WHERE h.body_id = b.id AND h.format = $2)
				ORDER BY b.id LIMIT $3`, cursor, headerIndexFormat, headerBackfillBatch)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, id := range ids {
				raw, err := headerPrefix(ctx, w, id)
				if err != nil {
					return err
				}
				// Replace: a row of another format is stale (one of this
				// format was not selected).
				if err := insertHeaderIndex(ctx, w, id, IndexHeader(raw), true); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("header index backfill: %w", err)
		}
		indexed += int64(len(ids))
		if len(ids) < headerBackfillBatch {
			break
		}
		cursor = ids[len(ids)-1]
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	err = s.write(ctx, func(w *wtx) error {
		_, err := w.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, headerBackfillDone, []byte(fmt.Sprint(headerIndexFormat)))
		return err
	})
	if err != nil {
		return fmt.Errorf("header index backfill: %w", err)
	}
	if indexed > 0 {
		s.log.Info("header index backfill done", "bodies", indexed, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
