package wire

// MsgPing is a keep-alive; the receiver answers with MsgPong (docs/protocol.md §4.6).
// Its payload is empty and ignored on receipt, so it has no decoder.
type MsgPing struct{}

// Command returns "ping".
func (MsgPing) Command() string { return CmdPing }

// Encode returns the empty payload.
func (MsgPing) Encode() []byte { return []byte{} }
