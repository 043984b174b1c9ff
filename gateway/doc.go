// Package gateway is the bridge between mail and Bitmessage.
//
// It owns the translation in both directions and the pipelines that use it:
//
//   - mapping.go: BM-…@domain mail addresses ⇄ Bitmessage addresses.
//   - outgoing.go: a submitted RFC 5322/MIME message → subject, plain-text
//     body and threading headers (docs/protocol.md §12 encodings carry
//     them), with mimetext.go (which MIME parts give the text), flowed.go
//     (format=flowed), htmltext.go (HTML → text, on the x/net/html
//     tokenizer), msgid.go (message IDs and threading extras) and text.go
//     (line and body clean-up).
//   - incoming.go: a verified Bitmessage message → an RFC 5322 message for
//     the recipient's mailbox.
//   - dsn.go: RFC 3464 delivery status reports for the sender's INBOX.
//   - errors.go: Error, which carries an SMTP reply, and SMTPError, the one
//     place any error becomes an SMTP reply.
//   - The other files: Submit, the outbound worker (pubkey → PoW → publish
//     → ack), the inbound dispatcher and delivery status upkeep.
//
// The translation files are pure functions: no store, no network, no clock.
// All MIME work goes through go-message; untrusted text never reaches a
// header without being sanitised and, where needed, RFC 2047 encoded.
//
// It imports bmcore and mailmap, go-message, golang.org/x/net/html and
// go-smtp (for the reply type only); it must not import smtpd, imapd or
// cmd.
package gateway
