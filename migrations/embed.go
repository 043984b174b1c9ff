// Package migrations holds bmgate's versioned database schema, one directory
// per SQL dialect, embedded into the binary. Files are named NNNN_what.sql;
// NNNN is the schema version the file brings the database to. mailmap applies
// them in order on open and records each in schema_migrations.
//
// The two directories describe the same logical schema: change both in the
// same commit, with the same version number. Never edit a file that has been
// released; add a new one.
//
// This package imports nothing of bmgate.
package migrations

import "embed"

// Postgres is the PostgreSQL schema (files under postgres/).
//
//go:embed postgres/*.sql
var Postgres embed.FS

// SQLite is the SQLite schema (files under sqlite/).
//
//go:embed sqlite/*.sql
var SQLite embed.FS
