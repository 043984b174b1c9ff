package wire

// MsgVerack acknowledges a version (docs/protocol.md §4.1). Its payload is empty; a
// receiver ignores any bytes sent with it, as PyB does, so it has no decoder.
type MsgVerack struct{}

// Command returns "verack".
func (MsgVerack) Command() string { return CmdVerack }

// Encode returns the empty payload.
func (MsgVerack) Encode() []byte { return []byte{} }
