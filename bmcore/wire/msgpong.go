package wire

// MsgPong answers MsgPing (docs/protocol.md §4.6). PyB ignores it on receipt.
type MsgPong struct{}

// Command returns "pong".
func (MsgPong) Command() string { return CmdPong }

// Encode returns the empty payload.
func (MsgPong) Encode() []byte { return []byte{} }
