// Package params holds the network profiles bmgate can join: the live
// Bitmessage network and a private test network with trivial proof of work.
package params

// Network is one network profile.
type Network struct {
	Name string
	// Magic is the packet-header magic (docs/protocol.md §2).
	Magic uint32
	// DefaultPort is the TCP port nodes listen on.
	DefaultPort int
	// NonceTrialsPerByte and ExtraBytes are the network minimum difficulty:
	// every relayed object must meet it, and demands below it are raised to it.
	NonceTrialsPerByte uint64
	ExtraBytes         uint64
	// Bootstrap are DNS names tried when no known node answers (docs/protocol.md §15.1).
	Bootstrap []string
	// Seeds are hard-coded known nodes (docs/protocol.md §15.1).
	Seeds []string
}

// Mainnet is the live Bitmessage network (PyBitmessage 0.6.x).
var Mainnet = &Network{
	Name:               "mainnet",
	Magic:              0xE9BEB4D9,
	DefaultPort:        8444,
	NonceTrialsPerByte: 1000,
	ExtraBytes:         1000,
	Bootstrap:          []string{"bootstrap8080.bitmessage.org:8080", "bootstrap8444.bitmessage.org:8444"},
	Seeds: []string{
		"5.45.99.75:8444", "75.167.159.54:8444", "95.165.168.168:8444",
		"85.180.139.241:8444", "158.222.217.190:8080", "178.62.12.187:8448",
		"24.188.198.204:8111", "109.147.204.113:1195", "178.11.46.221:8444",
	},
}

// Testnet is a private network for tests and local experiments: the same wire
// protocol under its own magic, so it never mixes with mainnet, and the
// lowest possible proof of work so tests run in seconds. It has no seeds.
var Testnet = &Network{
	Name:               "test",
	Magic:              0x0B17E570,
	DefaultPort:        18444,
	NonceTrialsPerByte: 1,
	ExtraBytes:         1,
}

// ByName returns the profile with that name, or nil.
func ByName(name string) *Network {
	switch name {
	case Mainnet.Name:
		return Mainnet
	case Testnet.Name:
		return Testnet
	}
	return nil
}

// Clamp raises a demanded difficulty to the network minimum (docs/protocol.md §6.5).
func (n *Network) Clamp(ntpb, extra uint64) (uint64, uint64) {
	return max(ntpb, n.NonceTrialsPerByte), max(extra, n.ExtraBytes)
}
