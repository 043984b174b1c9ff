package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestErrorMessage(t *testing.T) {
	// What PyB's assembleErrorMessage(fatal=2, errorText=...) produces:
	// varint fatal, varint banTime, var_str inventoryVector, var_str text.
	m := &MsgError{Fatal: ErrorFatal, Text: "Server full, please try again later."}
	p := m.Encode()
	want := append([]byte{0x02, 0x00, 0x00, byte(len(m.Text))}, m.Text...)
	if !bytes.Equal(p, want) {
		t.Fatalf("error payload %x, want %x", p, want)
	}
	back, err := DecodeError(p)
	if err != nil || back.Fatal != 2 || back.Text != m.Text || back.InvVector != nil {
		t.Fatalf("DecodeError: %+v, %v", back, err)
	}
	withInv := &MsgError{Fatal: ErrorWarning, BanTime: 3600, InvVector: bytes.Repeat([]byte{7}, 32), Text: "x"}
	p = withInv.Encode()
	back, err = DecodeError(p)
	if err != nil || back.BanTime != 3600 || !bytes.Equal(back.InvVector, withInv.InvVector) {
		t.Fatalf("DecodeError: %+v, %v", back, err)
	}
	checkTruncations(t, p, func(b []byte) error { _, err := DecodeError(b); return err })
	if _, err := DecodeError(append(p, 0)); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("trailing: %v", err)
	}
	long := &MsgError{InvVector: make([]byte, 33)}
	if _, err := DecodeError(long.Encode()); !errors.Is(err, ErrTooLong) {
		t.Fatalf("33-byte vector: %v", err)
	}
}
