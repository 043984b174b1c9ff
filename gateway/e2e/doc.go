// Package e2e holds bmgate's end-to-end system tests and nothing else: it
// has no code outside its _test.go files.
//
// Each test assembles whole sites in one process — a mailmap store, a
// bmcore/node on the test network, the gateway, and the smtpd and imapd
// servers — that talk to each other over 127.0.0.1. Mail goes in through
// go-smtp's client and is read back from the store or through go-imap's
// client, as a mail user would see it.
//
// These tests live here rather than in package gateway so that gateway and
// its own tests depend only on what gateway itself knows (bmcore and
// mailmap): assembling the mail servers around it is a system concern, and
// keeping it out of gateway's test imports keeps the arrows one way
// (smtpd → gateway, never back). cmd/bmgate's layering test checks this.
//
// TestTwoInstancesOneDatabase needs PostgreSQL (BMGATE_TEST_PG); the rest
// run on SQLite files in temporary directories.
package e2e
