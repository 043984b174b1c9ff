package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/mail"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
)

var cmdSendmail = &command{
	name: "sendmail",
	args: "[-t] [-i] [-f FROM] [-F NAME] [-N NOTIFY] [-R full|hdrs] [-V ENVID] [other sendmail options] [--] [RCPT ...]",
	summary: "Queue the message on standard input for sending, like sendmail(8), through the same path as SMTP " +
		"submission. The sender (-f, else the From header, else the local user running the command) must be a BM- " +
		"address of a bmgate user, or a local user name mapped to one with sendmail_identity (root:BM-…); -t takes " +
		"the recipients from the To, Cc and Bcc headers (and removes Bcc). Options are sendmail's: combined (-ti), " +
		"with attached or separate values (-fFROM, -f FROM); the options of a local MTA (-oi, -oem, -odi, -B8BITMIME, " +
		"-X FILE, …) are accepted and ignored. Exit status follows sysexits(3): 64 usage, 65 bad message, 67 unknown " +
		"sender or recipient, 69 unavailable, 70 internal error, 75 try again later, 77 permission denied, 78 " +
		"configuration error. The running server sends the queued mail.",
	run: runSendmail,
}

func init() { commands = append(commands, cmdSendmail) }

// sendmailMaxBytes bounds what sendmail reads; the gateway refuses text
// over what a Bitmessage object carries anyway.
const sendmailMaxBytes = 1 << 20

// sendmail exit codes (sysexits.h), which scripts and cron test for.
const (
	exUsage       = 64
	exDataErr     = 65
	exNoUser      = 67
	exUnavailable = 69
	exSoftware    = 70
	exTempFail    = 75
	exNoPerm      = 77
	exConfig      = 78
)

// exitError carries a sysexits status to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the process exit status run() uses.
func (e *exitError) ExitCode() int { return e.code }

func runSendmail(ctx context.Context, inv *invocation) error {
	cf := bindConfigFlags(inv.fs, false)
	opts, err := parseSendmailArgs(inv.raw, inv.fs)
	if err != nil {
		return &exitError{exUsage, err}
	}
	if opts.help {
		inv.printUsage(inv.stdout)
		return errHelp
	}
	if err := inv.fs.Parse(opts.longFlags); err != nil {
		return &exitError{exUsage, err}
	}
	inv.warnUnknownEnv()
	cfg, err := cf.load(inv.getenv)
	if err != nil {
		return &exitError{exConfig, err}
	}
	localIDs, err := parseSendmailIdentities(cfg.SendmailIdentity)
	if err != nil {
		return &exitError{exConfig, err}
	}
	notifyBits, err := parseNotify(opts.notify)
	if err != nil {
		return &exitError{exUsage, err}
	}
	raw, err := io.ReadAll(io.LimitReader(inv.stdin, sendmailMaxBytes+1))
	if err != nil {
		return &exitError{exTempFail, fmt.Errorf("read message: %w", err)}
	}
	if len(raw) > sendmailMaxBytes {
		return &exitError{exDataErr, fmt.Errorf("message larger than %d bytes", sendmailMaxBytes)}
	}
	raw = normalizeCRLF(raw)
	hdr, body, err := splitMessage(raw)
	if err != nil {
		return &exitError{exDataErr, fmt.Errorf("parse message: %w", err)}
	}
	rcpts := opts.rcpts
	if opts.useHdrs {
		list, err := headerRecipients(hdr)
		if err != nil {
			return &exitError{exDataErr, err}
		}
		rcpts = append(rcpts, list...)
		hdr.Del("Bcc")
	}
	if len(rcpts) == 0 {
		return &exitError{exUsage, errors.New("no recipients (give them as arguments or use -t)")}
	}
	hosts := localHostNames(cfg)

	// The sender: -f, else the From header, else the user running the
	// command (what sendmail does). A local user name (root, or
	// root@thishost) stands for the identity sendmail_identity maps it to.
	sender := opts.from
	hdrName, hdrAddr, hdrOK := looseAddress(hdr.Get("From"))
	if sender == "" {
		sender = hdrAddr
		if !hdrOK && strings.TrimSpace(hdr.Get("From")) != "" {
			return &exitError{exDataErr, fmt.Errorf("the From header %q cannot be parsed; give -f", hdr.Get("From"))}
		}
	}
	if sender == "" {
		sender = invokingUser(inv)
	}
	if sender == "" {
		return &exitError{exNoUser, errors.New("no sender: give -f, a From header, or map your local user with sendmail_identity")}
	}
	sender = withDomain(sender, cfg.Domain)
	senderMail := sender
	if name, ok := localName(sender, hosts); ok {
		bm, mapped := localIDs[name]
		if !mapped {
			return &exitError{exNoUser, fmt.Errorf("%s is not a Bitmessage identity: give -f BM-…@%s (or such a From header), "+
				"or map the local user to one of your identities with sendmail_identity = %s:BM-… in the configuration",
				name, cfg.Domain, name)}
		}
		senderMail = gateway.BMToMail(bm, cfg.Domain)
	}
	// A From header that names a local user (cron's "root (Cron Daemon)")
	// or is missing becomes the sending identity, keeping the display name.
	if _, local := localName(hdrAddr, hosts); local || hdr.Get("From") == "" || hdrOK && !strings.Contains(hdrAddr, "@") {
		name := hdrName // sendmail's -F names the sender only in a From header it writes
		if name == "" {
			name = opts.fullName
		}
		hdr.Set("From", (&mail.Address{Name: name, Address: senderMail}).String())
	}
	// Delivery reports thread under the sent message by its Message-ID; a
	// script rarely writes one. Date is required by RFC 5322 too.
	if strings.TrimSpace(hdr.Get("Message-Id")) == "" {
		id, err := newMessageID(cfg.Domain)
		if err != nil {
			return &exitError{exSoftware, err}
		}
		hdr.Set("Message-Id", id)
	}
	if strings.TrimSpace(hdr.Get("Date")) == "" {
		hdr.Set("Date", time.Now().Format(time.RFC1123Z))
	}
	if raw, err = joinMessage(hdr, body); err != nil {
		return &exitError{exDataErr, err}
	}

	if err := checkDBAccess(cfg); err != nil {
		return &exitError{exNoPerm, err}
	}
	store, err := inv.openStore(ctx, cfg)
	if err != nil {
		return &exitError{storeExitCode(err), err}
	}
	defer store.Close()
	gw, err := gateway.New(gateway.Config{Store: store, Network: cfg.NetworkParams(), Domain: cfg.Domain,
		PoWWorkers: cfg.PoWWorkers, MaxQueuedPoWPerUser: cfg.MaxQueuedPoW})
	if err != nil {
		return &exitError{exSoftware, err}
	}
	// The command runs with access to the database and the secret key, so it
	// is as trusted as the server's operator: the sender's identity names
	// the user.
	bm, err := gateway.MailToBM(senderMail, cfg.Domain)
	if err != nil {
		return &exitError{exNoUser, fmt.Errorf("sender %s: %w", senderMail, err)}
	}
	id, err := store.IdentityByAddress(ctx, bm)
	if errors.Is(err, mailmap.ErrNotFound) {
		return &exitError{exNoUser, fmt.Errorf("sender %s is not an identity of any bmgate user", senderMail)}
	}
	if err != nil {
		return &exitError{exTempFail, fmt.Errorf("look up sender %s: %w", senderMail, err)}
	}
	u, err := store.User(ctx, id.UserID)
	if err != nil {
		return &exitError{exTempFail, err}
	}
	// A disabled account's mail would wait unsent: refuse it now, as SMTP
	// refuses its login.
	if err := store.UserActive(ctx, u.ID); errors.Is(err, mailmap.ErrDisabled) {
		return &exitError{exUnavailable, fmt.Errorf("the account %s that owns %s is disabled", u.Name, senderMail)}
	} else if err != nil {
		return &exitError{exTempFail, err}
	}
	sub := gateway.Submission{User: u, Raw: raw, Ret: opts.ret, EnvID: opts.envID}
	if sub.From, err = gw.CheckSender(ctx, u, senderMail); err != nil {
		return &exitError{gatewayExitCode(err, exNoUser), err}
	}
	for _, r := range rcpts {
		r = withDomain(strings.TrimSpace(r), cfg.Domain)
		if name, ok := localName(r, hosts); ok {
			bm, mapped := localIDs[name]
			if !mapped {
				return &exitError{exNoUser, fmt.Errorf("recipient %s is a local user, not a Bitmessage identity: "+
					"map it with sendmail_identity = %s:BM-…, or write BM-…@%s", r, name, cfg.Domain)}
			}
			r = gateway.BMToMail(bm, cfg.Domain)
		}
		rc, err := gw.CheckRecipient(ctx, u, r)
		if err != nil {
			return &exitError{gatewayExitCode(err, exNoUser), err}
		}
		rc.Notify = notifyBits
		sub.Recipients = append(sub.Recipients, rc)
	}
	if err := gw.Submit(ctx, sub); err != nil {
		return &exitError{gatewayExitCode(err, exDataErr), err}
	}
	return nil
}

// gatewayExitCode maps a gateway refusal: permanent ones get perm (the
// caller's choice between bad data and unknown address), temporary ones 75,
// anything else (a database error) 75 as well.
func gatewayExitCode(err error, perm int) int {
	var ge *gateway.Error
	if errors.As(err, &ge) && !ge.Temporary {
		return perm
	}
	return exTempFail
}

// storeExitCode classifies a failure to open the database: no access to a
// file 77, a wrong or missing secret key or a bad database setting 78,
// anything else (a server that is down) 75.
func storeExitCode(err error) int {
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, fs.ErrPermission):
		return exNoPerm
	case errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "28") || pe.Code == "42501"):
		// invalid_authorization_specification, invalid_password,
		// insufficient_privilege: trying again will not help.
		return exNoPerm
	case errors.Is(err, mailmap.ErrSecretKey), errors.Is(err, errSecretKeyMissing), errors.Is(err, errDSN),
		errors.Is(err, mailmap.ErrNetworkMismatch):
		return exConfig
	}
	return exTempFail
}

// checkDBAccess tells a permission problem with the SQLite files apart
// from a temporary failure: SQLite reports it as "unable to open database
// file", which says nothing about why.
func checkDBAccess(cfg Config) error {
	path, ok := sqlitePath(cfg.DB)
	if !ok {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("no read and write access to the database %s (sendmail needs the same access to the data directory as serve; "+
			"for other local accounts use the local_submit listener): %w", path, err)
	}
	if err == nil {
		f.Close()
	}
	return nil
}

// invokingUser is the login name of who runs the command.
func invokingUser(inv *invocation) string {
	for _, v := range []string{"LOGNAME", "USER"} {
		if s := inv.getenv(v); s != "" {
			return s
		}
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// localHostNames are the domains under which an address names a local
// user: localhost, this host's name and the configured hostname.
func localHostNames(cfg Config) []string {
	hosts := []string{"localhost", cfg.Hostname}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	// The mail domain of Bitmessage addresses is never local, even when
	// the host has the same name.
	return slices.DeleteFunc(hosts, func(h string) bool { return strings.EqualFold(h, cfg.Domain) })
}

// withDomain completes a bare BM- address (what a script may pass as -f
// or a recipient) with the mail domain.
func withDomain(addr, domain string) string {
	if !strings.Contains(addr, "@") && len(addr) > 3 && strings.EqualFold(addr[:3], "BM-") {
		return addr + "@" + domain
	}
	return addr
}

// localName reports whether addr names a local user (root, root@localhost,
// root@thishost) rather than a mail address, and returns the user name.
func localName(addr string, hosts []string) (string, bool) {
	if addr == "" {
		return "", false
	}
	local, dom, hasAt := strings.Cut(addr, "@")
	if local == "" || strings.ContainsAny(local, " \t<>()\"") || len(local) > 3 && strings.EqualFold(local[:3], "BM-") {
		return "", false
	}
	if !hasAt {
		return local, true
	}
	for _, h := range hosts {
		if h != "" && strings.EqualFold(dom, h) {
			return local, true
		}
	}
	return "", false
}

// looseAddress reads one address as cron and scripts write it: RFC 5322
// (Name <a@b>), but also a bare local user, "root (Cron Daemon)" (Debian
// cron) and "\"(Cron Daemon)\" <root>" (cronie), which net/mail refuses for
// want of a domain. It returns the display name (or comment) and the
// address; ok is false for text it cannot read, and for an empty value.
func looseAddress(v string) (name, addr string, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", "", false
	}
	if a, err := (&mail.AddressParser{WordDecoder: &mime.WordDecoder{}}).Parse(v); err == nil {
		return a.Name, a.Address, true
	}
	if i := strings.LastIndexByte(v, '<'); i >= 0 && strings.HasSuffix(v, ">") {
		addr = strings.TrimSpace(v[i+1 : len(v)-1])
		name = strings.Trim(strings.TrimSpace(v[:i]), `"`)
	} else {
		addr = v
		if i := strings.IndexByte(v, '('); i >= 0 && strings.HasSuffix(v, ")") {
			addr, name = strings.TrimSpace(v[:i]), v[i+1:len(v)-1]
		}
	}
	name = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(name), "("), ")"))
	if addr == "" || strings.ContainsAny(addr, " \t<>()\",") {
		return "", "", false
	}
	return name, addr, true
}

// newMessageID makes a Message-ID field value for a message that has none.
func newMessageID(domain string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("message id: %w", err)
	}
	return "<" + hex.EncodeToString(b[:]) + "@" + domain + ">", nil
}

// parseNotify reads sendmail's -N argument (RFC 3461 NOTIFY values).
func parseNotify(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	bits := 0
	for _, v := range strings.Split(strings.ToLower(s), ",") {
		switch strings.TrimSpace(v) {
		case "never":
			bits |= mailmap.NotifyNever
		case "success":
			bits |= mailmap.NotifySuccess
		case "failure":
			bits |= mailmap.NotifyFailure
		case "delay":
			bits |= mailmap.NotifyDelay
		default:
			return 0, fmt.Errorf("unknown -N value %q", v)
		}
	}
	if bits&mailmap.NotifyNever != 0 && bits != mailmap.NotifyNever {
		return 0, errors.New("-N never cannot be combined with other values")
	}
	return bits, nil
}

// normalizeCRLF turns bare LF line ends (what scripts write) into CRLF.
func normalizeCRLF(b []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), len(b)+1)
	for sc.Scan() {
		out.Write(bytes.TrimSuffix(sc.Bytes(), []byte("\r")))
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// splitMessage reads the header section of raw (CRLF line ends) and returns
// it with the body after the blank line.
func splitMessage(raw []byte) (textproto.Header, []byte, error) {
	br := bufio.NewReader(bytes.NewReader(raw))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return textproto.Header{}, nil, err
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return textproto.Header{}, nil, err
	}
	return h, body, nil
}

// joinMessage writes the header h (its unchanged fields as they were read,
// folding included) and the body back into one message.
func joinMessage(h textproto.Header, body []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := textproto.WriteHeader(&out, h); err != nil {
		return nil, fmt.Errorf("write header: %w", err)
	}
	out.Write(body)
	return out.Bytes(), nil
}

// headerRecipients returns the addresses of every To, Cc and Bcc field
// (sendmail -t). An empty field counts as absent.
func headerRecipients(h textproto.Header) ([]string, error) {
	var rcpts []string
	for _, name := range []string{"To", "Cc", "Bcc"} {
		for _, v := range h.Values(name) {
			if strings.TrimSpace(v) == "" {
				continue
			}
			list, err := mail.ParseAddressList(v)
			if err == nil {
				for _, a := range list {
					rcpts = append(rcpts, a.Address)
				}
				continue
			}
			// Local user names (cron's "To: root") are no RFC 5322
			// addresses; read them one by one.
			for _, part := range strings.Split(v, ",") {
				if strings.TrimSpace(part) == "" {
					continue
				}
				_, a, ok := looseAddress(part)
				if !ok {
					return nil, fmt.Errorf("parse %s header: %w", name, err)
				}
				rcpts = append(rcpts, a)
			}
		}
	}
	return rcpts, nil
}
