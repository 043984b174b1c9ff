// Package wire encodes and decodes the Bitmessage protocol v3 wire format:
// var_int/var_str/var_int_list, the 24-byte packet header and every message
// (version, verack, addr, inv, getdata, object, ping, pong, error), and the
// object header. It does no I/O policy: no sockets, no timers, no retries.
// Every decoder checks a length against a hard limit before allocating.
//
// It imports only the standard library. See docs/protocol.md §1–§5.
package wire
