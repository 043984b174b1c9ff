package main

// Reading and writing PyBitmessage 0.6.3.2's files: keys.dat (an INI file
// read by Python 2's ConfigParser) and messages.dat (SQLite, the schema of
// src/class_sqlThread.py at tag 0.6.3.2).

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
)

// iniSection is one [section] of a keys.dat, options in file order.
type iniSection struct {
	name string
	keys []string          // lower-cased option names, in order
	vals map[string]string // raw values (PyBitmessage reads them raw)
}

func (s *iniSection) get(key string) (string, bool) {
	v, ok := s.vals[key]
	return v, ok
}

// parseINI reads an INI file as Python 2's ConfigParser does: sections in
// brackets, "option = value" or "option: value" (option names
// lower-cased), continuation lines that start with white space, comments
// on lines starting with '#' or ';' (and "rem"), and an inline comment
// after " ;". A line before the first section header is an error, as it is
// for ConfigParser (MissingSectionHeaderError).
func parseINI(data []byte) ([]*iniSection, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not UTF-8 text")
	}
	var out []*iniSection
	var cur *iniSection
	var last string // option a continuation line extends
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' ||
			(len(trimmed) >= 3 && strings.EqualFold(trimmed[:3], "rem") && (len(trimmed) == 3 || trimmed[3] == ' ' || trimmed[3] == '\t')) {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && cur != nil && last != "" {
			cur.vals[last] += "\n" + trimmed
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("line %d: section header without ]", n)
			}
			name := line[1:end]
			cur = nil
			for _, s := range out {
				if s.name == name { // ConfigParser merges a repeated section
					cur = s
				}
			}
			if cur == nil {
				cur = &iniSection{name: name, vals: map[string]string{}}
				out = append(out, cur)
			}
			last = ""
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("line %d: option before the first [section]", n)
		}
		i := strings.IndexAny(line, ":=")
		if i <= 0 {
			return nil, fmt.Errorf("line %d: not an option = value line", n)
		}
		key := strings.ToLower(strings.TrimSpace(line[:i]))
		val := line[i+1:]
		if j := strings.IndexByte(val, ';'); j > 0 && (val[j-1] == ' ' || val[j-1] == '\t') {
			val = val[:j]
		}
		val = strings.TrimSpace(val)
		if val == `""` {
			val = ""
		}
		if _, ok := cur.vals[key]; !ok {
			cur.keys = append(cur.keys, key)
		}
		cur.vals[key] = val
		last = key
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// pybIdentity is one address section of keys.dat, checked: its keys give
// its address.
type pybIdentity struct {
	Address         string
	Label           string
	Enabled         bool
	Decoy           bool
	Chan            bool
	MailingList     bool
	MailingListName string
	NonceTrials     uint64
	ExtraBytes      uint64
	Signing         []byte
	Encryption      []byte
	LastPubkeySent  time.Time
}

// pybBool reads a ConfigParser boolean (getboolean: 1/yes/true/on).
func pybBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", v)
}

// parseKeysDat reads a keys.dat and checks every identity in it (as
// PyBitmessage does, an identity is a section whose name starts with
// "BM-"). It returns the identities that pass and one problem per
// identity that does not; defNTPB and defExtra stand in for missing
// difficulty options.
func parseKeysDat(data []byte, defNTPB, defExtra uint64) (ids []pybIdentity, settings *iniSection, problems []string, err error) {
	secs, err := parseINI(data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("keys.dat is not a PyBitmessage keys file: %w", err)
	}
	for _, s := range secs {
		if s.name == "bitmessagesettings" {
			settings = s
		}
	}
	if settings == nil {
		return nil, nil, nil, errors.New("keys.dat has no [bitmessagesettings] section: not a PyBitmessage keys file")
	}
	for _, s := range secs {
		if !strings.HasPrefix(s.name, "BM-") {
			continue
		}
		id, err := checkPybIdentity(s, defNTPB, defExtra)
		if err != nil {
			problems = append(problems, fmt.Sprintf("[%s]: %v", s.name, err))
			continue
		}
		ids = append(ids, id)
	}
	return ids, settings, problems, nil
}

func checkPybIdentity(s *iniSection, defNTPB, defExtra uint64) (pybIdentity, error) {
	id := pybIdentity{Address: s.name, Enabled: true, NonceTrials: defNTPB, ExtraBytes: defExtra}
	addr, err := address.Decode(s.name)
	if err != nil {
		return id, fmt.Errorf("section name is not a valid address: %w", err)
	}
	id.Label, _ = s.get("label")
	bools := []struct {
		key string
		to  *bool
	}{{"enabled", &id.Enabled}, {"decoy", &id.Decoy}, {"chan", &id.Chan}, {"mailinglist", &id.MailingList}}
	for _, b := range bools {
		if v, ok := s.get(b.key); ok {
			if *b.to, err = pybBool(v); err != nil {
				return id, fmt.Errorf("%s: %w", b.key, err)
			}
		}
	}
	id.MailingListName, _ = s.get("mailinglistname")
	nums := []struct {
		key string
		to  *uint64
	}{{"noncetrialsperbyte", &id.NonceTrials}, {"payloadlengthextrabytes", &id.ExtraBytes}}
	for _, nf := range nums {
		if v, ok := s.get(nf.key); ok && v != "" {
			if *nf.to, err = strconv.ParseUint(v, 10, 64); err != nil {
				return id, fmt.Errorf("%s: not a number: %q", nf.key, v)
			}
		}
	}
	if v, ok := s.get("lastpubkeysendtime"); ok && v != "" {
		if t, err := strconv.ParseInt(v, 10, 64); err == nil && t > 0 {
			id.LastPubkeySent = time.Unix(t, 0)
		}
	}
	for _, k := range []struct {
		key string
		to  *[]byte
	}{{"privsigningkey", &id.Signing}, {"privencryptionkey", &id.Encryption}} {
		v, ok := s.get(k.key)
		if !ok || v == "" {
			return id, fmt.Errorf("no %s", k.key)
		}
		if *k.to, err = identity.DecodeWIF(v); err != nil {
			return id, fmt.Errorf("%s: %w", k.key, err)
		}
	}
	derived, err := identity.FromKeys(addr.Version, addr.Stream, id.Signing, id.Encryption)
	if err != nil {
		return id, err
	}
	if got := derived.Address.String(); got != s.name {
		return id, fmt.Errorf("its private keys give the address %s, not the section's name", got)
	}
	return id, nil
}

// PyBitmessage's messages.dat rows.

type pybInboxRow struct {
	MsgID       []byte
	To, From    string
	Subject     string
	Received    time.Time
	Body        string
	Folder      string
	Encoding    int64
	Read        bool
	problem     string // why the row cannot be imported, "" when it can
	description string
}

type pybSentRow struct {
	MsgID          []byte
	To, From       string
	Subject, Body  string
	AckData        []byte
	SentTime       time.Time
	LastActionTime time.Time
	SleepTill      time.Time
	Status         string
	Retries        int64
	Folder         string
	Encoding       int64
	TTL            time.Duration
	problem        string
}

type pybListRow struct {
	Label, Address string
	Enabled        bool
}

// pybMessages is what bmgate imports from messages.dat.
type pybMessages struct {
	Inbox         []pybInboxRow
	Sent          []pybSentRow
	Subscriptions []pybListRow
	AddressBook   []pybListRow // Enabled unused
	Blacklist     []pybListRow
	Whitelist     []pybListRow
}

// broadcastTo is the toaddress PyBitmessage stores for a received or sent
// broadcast.
const broadcastTo = "[Broadcast subscribers]"

// readMessagesDat opens PyBitmessage's database read-only and reads the
// tables bmgate imports. A file that is not an SQLite database, fails
// SQLite's quick check or lacks one of the tables is an error.
func readMessagesDat(ctx context.Context, path string) (*pybMessages, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 16)
	_, err = f.Read(head)
	f.Close()
	if err != nil || string(head) != "SQLite format 3\x00" {
		return nil, fmt.Errorf("%s is not an SQLite database (PyBitmessage's messages.dat is one)", path)
	}
	// immutable=1: read the file as it is, creating no -wal or -shm next to
	// the user's PyBitmessage data (PyBitmessage must not be running).
	db, err := sql.Open("sqlite", "file:"+sqliteURIPath(path)+"?mode=ro&immutable=1")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var check string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&check); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if check != "ok" {
		if lines := strings.Split(check, "\n"); len(lines) > 3 {
			check = strings.Join(lines[:3], "; ") + "; …"
		}
		return nil, fmt.Errorf("%s is damaged (SQLite's check: %s)", path, strings.ReplaceAll(check, "\n", "; "))
	}
	m := &pybMessages{}
	bad := func(table string, err error) error {
		return fmt.Errorf("%s: table %s: %w (is it a PyBitmessage 0.6 messages.dat?)", path, table, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT msgid, toaddress, fromaddress, subject, received, message, folder,
		encodingtype, read FROM inbox ORDER BY rowid`)
	if err != nil {
		return nil, bad("inbox", err)
	}
	for rows.Next() {
		var r pybInboxRow
		var to, from, subject, received, body, folder sql.RawBytes
		var enc, read sql.NullInt64
		if err := rows.Scan(&r.MsgID, &to, &from, &subject, &received, &body, &folder, &enc, &read); err != nil {
			rows.Close()
			return nil, bad("inbox", err)
		}
		r.MsgID = bytes.Clone(r.MsgID)
		r.To, r.From, r.Subject, r.Body, r.Folder = text(to), text(from), text(subject), text(body), text(folder)
		r.Encoding, r.Read = enc.Int64, read.Int64 != 0
		if t, err := strconv.ParseInt(strings.TrimSpace(string(received)), 10, 64); err == nil && t > 0 {
			r.Received = time.Unix(t, 0)
		} else {
			r.problem = fmt.Sprintf("received time %q is not a Unix time", string(received))
		}
		m.Inbox = append(m.Inbox, r)
	}
	if err := closeRows(rows); err != nil {
		return nil, bad("inbox", err)
	}
	rows, err = db.QueryContext(ctx, `SELECT msgid, toaddress, fromaddress, subject, message, ackdata, senttime,
		lastactiontime, sleeptill, status, retrynumber, folder, encodingtype, ttl FROM sent ORDER BY rowid`)
	if err != nil {
		return nil, bad("sent", err)
	}
	for rows.Next() {
		var r pybSentRow
		var to, from, subject, body, status, folder sql.RawBytes
		var sent, last, sleep, retries, enc, ttl sql.NullInt64
		if err := rows.Scan(&r.MsgID, &to, &from, &subject, &body, &r.AckData, &sent, &last, &sleep, &status,
			&retries, &folder, &enc, &ttl); err != nil {
			rows.Close()
			return nil, bad("sent", err)
		}
		r.MsgID, r.AckData = bytes.Clone(r.MsgID), bytes.Clone(r.AckData)
		r.To, r.From, r.Subject, r.Body = text(to), text(from), text(subject), text(body)
		r.Status, r.Folder = text(status), text(folder)
		r.Retries, r.Encoding, r.TTL = retries.Int64, enc.Int64, time.Duration(ttl.Int64)*time.Second
		if sent.Int64 > 0 {
			r.SentTime = time.Unix(sent.Int64, 0)
		}
		if last.Int64 > 0 {
			r.LastActionTime = time.Unix(last.Int64, 0)
		}
		if sleep.Int64 > 0 {
			r.SleepTill = time.Unix(sleep.Int64, 0)
		}
		if r.SentTime.IsZero() {
			r.SentTime = r.LastActionTime
		}
		if r.SentTime.IsZero() {
			r.problem = "no sent time"
		}
		m.Sent = append(m.Sent, r)
	}
	if err := closeRows(rows); err != nil {
		return nil, bad("sent", err)
	}
	for _, t := range []struct {
		table   string
		enabled bool
		to      *[]pybListRow
	}{
		{"subscriptions", true, &m.Subscriptions},
		{"addressbook", false, &m.AddressBook},
		{"blacklist", true, &m.Blacklist},
		{"whitelist", true, &m.Whitelist},
	} {
		q := `SELECT label, address, 1 FROM ` + t.table + ` ORDER BY rowid`
		if t.enabled {
			q = `SELECT label, address, enabled FROM ` + t.table + ` ORDER BY rowid`
		}
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			return nil, bad(t.table, err)
		}
		for rows.Next() {
			var label, addr sql.RawBytes
			var en sql.NullInt64
			if err := rows.Scan(&label, &addr, &en); err != nil {
				rows.Close()
				return nil, bad(t.table, err)
			}
			*t.to = append(*t.to, pybListRow{Label: text(label), Address: strings.TrimSpace(text(addr)), Enabled: en.Int64 != 0})
		}
		if err := closeRows(rows); err != nil {
			return nil, bad(t.table, err)
		}
	}
	return m, nil
}

// sqliteURIPath escapes a file name for an SQLite URI filename, in which
// '?' starts the parameters, '#' a fragment, and %HH is decoded.
func sqliteURIPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

// text makes a column's bytes valid UTF-8 (PyBitmessage stores Python 2
// byte strings, normally UTF-8).
func text(b sql.RawBytes) string {
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// pybSettings are the [bitmessagesettings] of a keys.dat bmgate writes:
// those PyBitmessage 0.6.3.2 writes into a new keys.dat
// (helper_startup.loadConfig) and adds on upgrades (class_sqlThread), less
// dontconnect (the user wants the node to connect) and identiconsuffix
// (random per installation; added below).
var pybSettings = [][2]string{
	{"settingsversion", "10"},
	{"port", "8444"},
	{"timeformat", "%%c"},
	{"blackwhitelist", "black"},
	{"startonlogon", "false"},
	{"minimizetotray", "false"},
	{"showtraynotifications", "true"},
	{"startintray", "false"},
	{"socksproxytype", "none"},
	{"sockshostname", "localhost"},
	{"socksport", "9050"},
	{"socksauthentication", "false"},
	{"sockslisten", "false"},
	{"socksusername", ""},
	{"sockspassword", ""},
	{"keysencrypted", "false"},
	{"messagesencrypted", "false"},
	{"defaultnoncetrialsperbyte", "1000"},
	{"defaultpayloadlengthextrabytes", "1000"},
	{"minimizeonclose", "false"},
	{"maxacceptablenoncetrialsperbyte", "20000000000"},
	{"maxacceptablepayloadlengthextrabytes", "20000000000"},
	{"userlocale", "system"},
	{"useidenticons", "True"},
	{"replybelow", "False"},
	{"maxdownloadrate", "0"},
	{"maxuploadrate", "0"},
	{"maxoutboundconnections", "8"},
	{"ttl", "367200"},
	{"stopresendingafterxdays", ""},
	{"stopresendingafterxmonths", ""},
	{"namecoinrpctype", "namecoind"},
	{"namecoinrpchost", "localhost"},
	{"namecoinrpcuser", ""},
	{"namecoinrpcpassword", ""},
	{"namecoinrpcport", "8336"},
	{"sendoutgoingconnections", "True"},
	{"onionhostname", ""},
	{"onionport", "8444"},
	{"onionbindip", "127.0.0.1"},
	{"smtpdeliver", ""},
	{"hidetrayconnectionnotifications", "false"},
}

// iniValue makes a value safe for one ConfigParser line: one line, no
// leading or trailing blanks (they would be stripped), no " ;" (the rest
// would be read as a comment).
func iniValue(v string) string {
	v = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, v)
	v = strings.ReplaceAll(v, " ;", " ,")
	v = strings.ReplaceAll(v, "\t;", " ,")
	return strings.TrimSpace(v)
}
