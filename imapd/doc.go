// Package imapd is bmgate's IMAP server: a go-imap/v2 imapserver backend over
// the mailmap store. It owns the IMAP session state (selected mailbox,
// sequence-number views fed from the store's Notifier with a modseq poll as
// backstop), the mapping of store errors to IMAP response codes, connection
// limits and login throttling.
//
// It imports mailmap for its domain types only and must not import gateway,
// smtpd or bmcore: IMAP knows nothing of Bitmessage. go-imap types stay inside
// this package.
package imapd
