// Command bmgate is the binary: it reads the configuration (one typed Config
// from a file, the environment and flags), wires the store, the Bitmessage
// node, the gateway and the SMTP/IMAP servers together (serve), and offers
// the administration subcommands (user, address, chan, subscribe, status,
// config) that work on the same data directory or database as a running
// server.
//
// It may import every package of the module; nothing imports it. Protocol,
// storage and mail logic live in their packages, never here.
package main
