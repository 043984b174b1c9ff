// Package node is a Bitmessage P2P node compatible with PyBitmessage 0.6.x:
// it listens and dials (directly or through SOCKS5), runs the version/verack
// handshake, floods objects with inv/getdata, validates every object before
// it stores or relays it, exchanges addr, keeps connections alive with pings
// and disconnects and bans peers that send garbage. It persists objects
// through inventory.Inventory and peers through inventory.KnownNodes; it
// knows nothing of email, SQL or keys.
//
// It imports only the standard library and bmcore (wire, inventory, pow,
// params).
// See docs/protocol.md §2–§5, §11, §13–§16.
package node
