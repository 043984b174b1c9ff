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
//   - errors.go: Error, which carries an SMTP reply code and text, and
//     Reply, the one place any error gets the meaning the client sees
//     (smtpd puts it on the wire).
//   - The other files: Submit, the outbound worker (pubkey → PoW → publish
//     → ack), the inbound workers and delivery status upkeep.
//
// The translation files are pure functions: no store, no network, no clock.
// All MIME work goes through go-message; untrusted text never reaches a
// header without being sanitised and, where needed, RFC 2047 encoded.
//
// It imports bmcore (not bmcore/node: objects arrive as
// inventory.StoredObject and leave through the Publisher interface) and
// mailmap, go-message and golang.org/x/net/html; it must not import smtpd,
// imapd, cmd or go-smtp, and neither must its tests. The end-to-end tests
// that assemble whole sites live in gateway/e2e.
package gateway
