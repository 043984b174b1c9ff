package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
)

var cmdSendmail = &command{
	name: "sendmail",
	args: "[-t] [-f FROM] [-N NOTIFY] [RCPT ...]",
	summary: "Queue the message on standard input for sending, like sendmail(8), through the same path as SMTP " +
		"submission. The sender (-f, else the From header) must be a BM- address of a bmgate user; -t takes the " +
		"recipients from the To, Cc and Bcc headers (and removes Bcc). The running server sends the queued mail.",
	run: runSendmail,
}

func init() { commands = append(commands, cmdSendmail) }

// sendmailMaxBytes bounds what sendmail reads; the gateway refuses text
// over what a Bitmessage object carries anyway.
const sendmailMaxBytes = 1 << 20

// sendmail exit codes (sysexits.h), which scripts test for.
const (
	exDataErr  = 65
	exNoUser   = 67
	exTempFail = 75
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
	fromFlag := inv.fs.String("f", "", "envelope sender: a BM-…@domain address of one of the user's identities")
	useHeaders := inv.fs.Bool("t", false, "read the recipients from the To, Cc and Bcc headers")
	notify := inv.fs.String("N", "", "delivery status notifications: never, or a comma list of success, failure, delay")
	inv.fs.Bool("i", false, "ignored (a lone dot does not end the message)")
	inv.fs.Bool("oi", false, "ignored, as -i")
	cfg, err := inv.parse(0, -1)
	if err != nil {
		return err
	}
	notifyBits, err := parseNotify(*notify)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	raw, err := io.ReadAll(io.LimitReader(inv.stdin, sendmailMaxBytes+1))
	if err != nil {
		return fmt.Errorf("read message: %w", err)
	}
	if len(raw) > sendmailMaxBytes {
		return &exitError{exDataErr, fmt.Errorf("message larger than %d bytes", sendmailMaxBytes)}
	}
	raw = normalizeCRLF(raw)
	hdr, body, err := splitMessage(raw)
	if err != nil {
		return &exitError{exDataErr, fmt.Errorf("parse message: %w", err)}
	}
	rcpts := inv.args
	if *useHeaders {
		list, err := headerRecipients(hdr)
		if err != nil {
			return &exitError{exDataErr, err}
		}
		rcpts = append(rcpts, list...)
		hdr.Del("Bcc")
		if raw, err = joinMessage(hdr, body); err != nil {
			return &exitError{exDataErr, err}
		}
	}
	if len(rcpts) == 0 {
		return &exitError{exDataErr, errors.New("no recipients (give them as arguments or use -t)")}
	}
	from := *fromFlag
	if from == "" {
		list, err := mail.ParseAddressList(hdr.Get("From"))
		if err != nil || len(list) != 1 {
			return &exitError{exNoUser, errors.New("no sender: give -f or a From header")}
		}
		from = list[0].Address
	}

	store, err := inv.openStore(ctx, cfg)
	if err != nil {
		return &exitError{exTempFail, err}
	}
	defer store.Close()
	gw, err := gateway.New(gateway.Config{Store: store, Network: cfg.NetworkParams(), Domain: cfg.Domain,
		PoWWorkers: cfg.PoWWorkers, MaxQueuedPoWPerUser: cfg.MaxQueuedPoW})
	if err != nil {
		return err
	}
	// The command runs with access to the database and the secret key, so it
	// is as trusted as the server's operator: the sender's identity names
	// the user.
	bm, err := gateway.MailToBM(from, cfg.Domain)
	if err != nil {
		return &exitError{exNoUser, fmt.Errorf("sender %s: %w", from, err)}
	}
	id, err := store.IdentityByAddress(ctx, bm)
	if err != nil {
		return &exitError{exNoUser, fmt.Errorf("sender %s is not an identity of any bmgate user", from)}
	}
	u, err := store.User(ctx, id.UserID)
	if err != nil {
		return &exitError{exTempFail, err}
	}
	sub := gateway.Submission{User: u, Raw: raw}
	if sub.From, err = gw.CheckSender(ctx, u, from); err != nil {
		return &exitError{exNoUser, err}
	}
	for _, r := range rcpts {
		rc, err := gw.CheckRecipient(ctx, u, strings.TrimSpace(r))
		if err != nil {
			return &exitError{exNoUser, err}
		}
		rc.Notify = notifyBits
		sub.Recipients = append(sub.Recipients, rc)
	}
	if err := gw.Submit(ctx, sub); err != nil {
		var ge *gateway.Error
		if errors.As(err, &ge) && !ge.Temporary {
			return &exitError{exDataErr, err}
		}
		return &exitError{exTempFail, err}
	}
	return nil
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
			if err != nil {
				return nil, fmt.Errorf("parse %s header: %w", name, err)
			}
			for _, a := range list {
				rcpts = append(rcpts, a.Address)
			}
		}
	}
	return rcpts, nil
}
