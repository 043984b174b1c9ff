// Package storetest is the conformance suite every mailmap.Store backend
// must pass: Run for the behaviour of one Store, RunShared for several Store
// instances over one database (processes sharing PostgreSQL), and the
// Bench* helpers for the throughput figures. mailmap's own tests run it
// against SQLite and PostgreSQL.
//
// It imports mailmap and bmcore types and the pgx driver (to create a
// throwaway PostgreSQL database per test); it must not import imapd, smtpd
// or the gateway.
package storetest
