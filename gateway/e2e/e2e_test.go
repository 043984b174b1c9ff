package e2e_test

// End-to-end tests of the bridge: whole sites (store, node, gateway, SMTP
// and IMAP servers) in one process, on the test network, talking over
// 127.0.0.1. Mail goes in with go-smtp's client and is read back from the
// store or with go-imap's client, as a mail user would see it.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/node"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/imapd"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/smtpd"
)

const testDomain = "bm.test"

var testKey = bytes.Repeat([]byte{7}, 32)

// site is one bmgate: store, node, gateway, SMTP and IMAP, in process.
type site struct {
	t        *testing.T
	name     string
	dsn      string
	store    mailmap.Store
	node     *node.Node
	gw       *gateway.Gateway
	smtp     *smtpd.Server
	imap     *imapd.Server
	smtpAddr string
	imapAddr string
	p2pAddr  string
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	tweak    func(*gateway.Config)
	peers    []string
}

// newSite starts a site on a fresh SQLite store (or the given DSN) that
// connects to the given peers.
func newSite(t *testing.T, name string, tweak func(*gateway.Config), peers ...*site) *site {
	t.Helper()
	return newSiteOn(t, name, filepath.Join(t.TempDir(), name+".db"), tweak, peers...)
}

// newSiteOn starts a site on the given database (two sites on one
// PostgreSQL database are two instances of one deployment).
func newSiteOn(t *testing.T, name, dsn string, tweak func(*gateway.Config), peers ...*site) *site {
	t.Helper()
	s := &site{t: t, name: name, dsn: dsn, tweak: tweak}
	for _, p := range peers {
		s.peers = append(s.peers, p.p2pAddr)
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *site) start() {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	st, err := mailmap.Open(ctx, s.dsn, mailmap.Options{SecretKey: testKey})
	if err != nil {
		t.Fatalf("%s: open store: %v", s.name, err)
	}
	s.store = st
	listen := "127.0.0.1:0"
	if s.p2pAddr != "" {
		listen = s.p2pAddr // a restart keeps its address so peers find it again
	}
	var gw *gateway.Gateway
	n, err := node.New(node.Config{
		Network:           params.Testnet,
		ListenAddr:        listen,
		Peers:             s.peers,
		Inventory:         st,
		KnownNodes:        st,
		AllowPrivateAddrs: true,
		OnObject: func(inventory.StoredObject) {
			if gw != nil {
				gw.WakeInbound()
			}
		},
	})
	if err != nil {
		t.Fatalf("%s: node: %v", s.name, err)
	}
	gc := gateway.Config{
		Store:               st,
		Publisher:           n,
		Network:             params.Testnet,
		Domain:              testDomain,
		PollInterval:        100 * time.Millisecond,
		PubkeyPoll:          100 * time.Millisecond,
		MaintenanceInterval: 200 * time.Millisecond,
		Lease:               3 * time.Second,
		PoWWorkers:          1,
	}
	if s.tweak != nil {
		s.tweak(&gc)
	}
	gw, err = gateway.New(gc)
	if err != nil {
		t.Fatalf("%s: gateway: %v", s.name, err)
	}
	s.node, s.gw = n, gw
	if err := n.Start(ctx); err != nil {
		t.Fatalf("%s: start node: %v", s.name, err)
	}
	s.p2pAddr = n.Addr().String()

	s.smtp = smtpd.New(st, gw, smtpd.Config{Domain: "localhost", AllowInsecureAuth: true})
	s.imap = imapd.New(st, imapd.Config{AllowInsecureAuth: true})
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	il, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.smtpAddr, s.imapAddr = sl.Addr().String(), il.Addr().String()
	s.wg.Add(3)
	go func() { defer s.wg.Done(); _ = s.smtp.Serve(sl) }()
	go func() { defer s.wg.Done(); _ = s.imap.Serve(il) }()
	go func() { defer s.wg.Done(); _ = gw.Run(ctx) }()
}

// stop shuts the site down; its store file stays for a restart.
func (s *site) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.smtp.Shutdown(ctx)
	_ = s.imap.Close()
	s.node.Close()
	s.wg.Wait()
	s.store.Close()
	s.cancel = nil
}

func (s *site) restart() {
	s.stop()
	s.start()
}

// user creates a user with one new random identity and returns both.
func (s *site) user(name string) (mailmap.User, string) {
	s.t.Helper()
	ctx := context.Background()
	u, err := s.store.CreateUser(ctx, name, "pw-"+name)
	if err != nil {
		s.t.Fatalf("create user: %v", err)
	}
	return u, s.newAddress(u)
}

func (s *site) newAddress(u mailmap.User) string {
	s.t.Helper()
	id, err := identity.NewRandom(1, rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := s.store.AddIdentity(context.Background(), mailmap.Identity{
		UserID: u.ID, Address: id.Address.String(), Kind: mailmap.KindNormal,
		SigningKey: id.Signing.Serialize(), EncryptionKey: id.Encryption.Serialize(),
		PublishPubkey: true, NonceTrialsPerByte: 1, ExtraBytes: 1,
	})
	if err != nil {
		s.t.Fatalf("add identity: %v", err)
	}
	return m.Address
}

func (s *site) joinChan(u mailmap.User, name string) string {
	s.t.Helper()
	id, err := identity.Chan(name)
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := s.store.AddIdentity(context.Background(), mailmap.Identity{
		UserID: u.ID, Address: id.Address.String(), Label: "[chan] " + name, Kind: mailmap.KindChan,
		SigningKey: id.Signing.Serialize(), EncryptionKey: id.Encryption.Serialize(),
		NonceTrialsPerByte: 1, ExtraBytes: 1,
	})
	if err != nil {
		s.t.Fatalf("join chan: %v", err)
	}
	return m.Address
}

func mailOf(bm string) string { return bm + "@" + testDomain }

// sendOpts are the SMTP options of one send.
type sendOpts struct {
	notify []smtp.DSNNotify
	ret    smtp.DSNReturn
	envID  string
}

// send submits a message over SMTP as user name.
func (s *site) send(name, from string, to []string, subject, body string, extraHeaders string, o sendOpts) (string, error) {
	s.t.Helper()
	msgID := fmt.Sprintf("<%d.%s@client.test>", time.Now().UnixNano(), name)
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: %s\r\n%sContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		mailOf(from), strings.Join(to, ", "), subject, msgID, time.Now().Format(time.RFC1123Z), extraHeaders, body)
	c, err := smtp.Dial(s.smtpAddr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return "", err
	}
	if err := c.Auth(plainAuth(name, "pw-"+name)); err != nil {
		return "", err
	}
	mo := &smtp.MailOptions{EnvelopeID: o.envID, Return: o.ret}
	if err := c.Mail(mailOf(from), mo); err != nil {
		return "", err
	}
	for _, r := range to {
		var ro *smtp.RcptOptions
		if o.notify != nil {
			ro = &smtp.RcptOptions{Notify: o.notify}
		}
		if err := c.Rcpt(r, ro); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return strings.Trim(msgID, "<>"), c.Quit()
}

// waitMail waits until the user's folder holds a message that match accepts
// and returns its raw bytes.
func (s *site) waitMail(u mailmap.User, folder string, timeout time.Duration, match func(raw []byte) bool) []byte {
	s.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		mb, err := s.store.Mailbox(ctx, u.ID, folder)
		if err == nil {
			msgs, err := s.store.Messages(ctx, u.ID, mb.ID)
			if err != nil {
				s.t.Fatal(err)
			}
			for _, m := range msgs {
				raw, err := s.store.MessageRaw(ctx, u.ID, mb.ID, m.UID)
				if err != nil {
					s.t.Fatal(err)
				}
				if match(raw) {
					return raw
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("%s: no matching message in %s of %s within %v", s.name, folder, u.Name, timeout)
	return nil
}

// count returns how many messages in the folder match.
func (s *site) count(u mailmap.User, folder string, match func(raw []byte) bool) int {
	s.t.Helper()
	ctx := context.Background()
	mb, err := s.store.Mailbox(ctx, u.ID, folder)
	if err != nil {
		return 0
	}
	msgs, err := s.store.Messages(ctx, u.ID, mb.ID)
	if err != nil {
		s.t.Fatal(err)
	}
	n := 0
	for _, m := range msgs {
		raw, err := s.store.MessageRaw(ctx, u.ID, mb.ID, m.UID)
		if err != nil {
			s.t.Fatal(err)
		}
		if match(raw) {
			n++
		}
	}
	return n
}

// waitOutbox waits until every outbox row of the user is in the state.
func (s *site) waitOutbox(u mailmap.User, state mailmap.OutboxState, timeout time.Duration) []mailmap.OutboxItem {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var items []mailmap.OutboxItem
	for time.Now().Before(deadline) {
		var err error
		items, err = s.store.UserOutbox(context.Background(), u.ID)
		if err != nil {
			s.t.Fatal(err)
		}
		ok := len(items) > 0
		for _, it := range items {
			ok = ok && it.State == state
		}
		if ok {
			return items
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, it := range items {
		s.t.Logf("outbox %d: state %s, attempts %d, error %q", it.ID, it.State, it.Attempts, it.LastError)
	}
	s.t.Fatalf("%s: outbox of %s not all %s within %v", s.name, u.Name, state, timeout)
	return nil
}

// waitSettled waits until the site has nothing left to do for u: every
// outbox row is final (acked or failed, or sent with nothing to wait for)
// with its final report flag set, no proof-of-work job is queued and every
// inventory object is processed. Reports are filed only in the transition
// that sets that flag, and deliveries only while objects are pending, so
// after this, counts of reports and deliveries are final: tests assert an
// absence after this event, not after a sleep.
func (s *site) waitSettled(u mailmap.User, timeout time.Duration) {
	s.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		items, err := s.store.UserOutbox(ctx, u.ID)
		if err != nil {
			s.t.Fatal(err)
		}
		settled := true
		for _, it := range items {
			final := it.State == mailmap.OutboxAcked || it.State == mailmap.OutboxFailed ||
				(it.State == mailmap.OutboxSent && len(it.AckData) == 0)
			settled = settled && final && it.Reported
		}
		jobs, err := s.store.PoWJobs(ctx)
		if err != nil {
			s.t.Fatal(err)
		}
		pending, err := s.store.PendingObjects(ctx, time.Now().Add(24*time.Hour), 1)
		if err != nil {
			s.t.Fatal(err)
		}
		if settled && len(jobs) == 0 && len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not settled within %v: outbox %+v, %d jobs, %d pending objects", s.name, timeout, items, len(jobs), len(pending))
		}
		time.Sleep(20 * time.Millisecond) // polling for the event, not asserting after a sleep
	}
}

func header(raw []byte, key string) string {
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	defer r.Close()
	v, _ := r.Header.Text(key)
	if key == "Subject" {
		v, _ = r.Header.Subject()
	}
	return v
}

func bodyOf(t *testing.T, raw []byte) string {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse mail: %v", err)
	}
	p, err := r.NextPart()
	if err != nil {
		t.Fatalf("mail part: %v", err)
	}
	b, err := io.ReadAll(p.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hasSubject(s string) func([]byte) bool {
	return func(raw []byte) bool { return header(raw, "Subject") == s }
}

// plainAuth is SASL PLAIN without go-sasl's TLS check (the test servers
// allow plain-text auth on loopback).
type plainAuthClient struct{ user, pass string }

func plainAuth(user, pass string) *plainAuthClient { return &plainAuthClient{user, pass} }

func (a *plainAuthClient) Start() (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}
func (a *plainAuthClient) Next([]byte) ([]byte, error) {
	return nil, errors.New("unexpected challenge")
}

// putPubkeyOf caches a local identity's public keys in another store, as if
// its pubkey object had been received.
func putPubkeyOf(t *testing.T, st mailmap.Store, m mailmap.Identity) {
	t.Helper()
	a, err := address.Decode(m.Address)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromKeys(a.Version, a.Stream, m.SigningKey, m.EncryptionKey)
	if err != nil {
		t.Fatal(err)
	}
	err = st.PutPubkey(context.Background(), mailmap.Pubkey{
		Address: m.Address, Version: a.Version, Stream: a.Stream, Bitfield: 1,
		SigningKey: id.PublicSigning(), EncryptionKey: id.PublicEncryption(),
		NonceTrialsPerByte: 1, ExtraBytes: 1, Source: "test", LearnedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
}
