// Package smtpd is bmgate's mail submission server (RFC 6409) on go-smtp:
// STARTTLS and implicit TLS, AUTH PLAIN and LOGIN over TLS only, AUTH before
// MAIL, failed logins slowed by the shared login guard (package
// loginguard), connection caps per listener and per IP, a login timeout, size and
// recipient limits, read/write timeouts, the DSN extension (RFC 3461:
// NOTIFY, RET, ENVID, ORCPT), and a trusted loopback/unix-socket listener
// for local scripts that cannot authenticate.
//
// It decides nothing about mail or Bitmessage: the Authenticator checks
// passwords and the Submitter (the gateway) checks senders and recipients
// and accepts the message. Every refusal goes through smtpReply (reply.go),
// which takes its meaning from gateway.Reply; go-smtp stays in this package.
// It never logs passwords or message bodies.
//
// It imports gateway and mailmap (types only); it must not import imapd,
// cmd or bmcore.
package smtpd
