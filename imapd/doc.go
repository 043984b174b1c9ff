// Package imapd is bmgate's IMAP server: a go-imap/v2 imapserver backend over
// the mailmap store. It owns the IMAP session state (selected mailbox,
// sequence-number views fed from the store's Notifier with a modseq poll as
// backstop), the mapping of store errors to IMAP response codes, connection
// limits, the login guard's use (package loginguard), and a front that sees
// the commands in the clear to fix what imapserver gets wrong (front.go).
//
// It imports mailmap for its domain types only and must not import gateway,
// smtpd or bmcore: IMAP knows nothing of Bitmessage. go-imap types stay inside
// this package.
package imapd
