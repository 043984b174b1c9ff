package imapd

import (
	"bytes"
	"strings"
	"testing"
)

func TestLiteralAt(t *testing.T) {
	for line, want := range map[string]struct {
		size    int64
		nonSync bool
		ok      bool
	}{
		"a LOGIN {5}\r\n":                {5, false, true},
		"a LOGIN {5000+}\r\n":            {5000, true, true},
		"a LOGIN {5} \r\n":               {5, false, true},
		"a LOGIN {5}\n":                  {5, false, true},
		"a APPEND x ~{12}\r\n":           {12, false, true},
		"a LOGIN {}\r\n":                 {0, false, false},
		"a LOGIN {+}\r\n":                {0, false, false},
		"a LOGIN {1a}\r\n":               {0, false, false},
		"a LOGIN \"{5}\"\r\n":            {0, false, false},
		"}\r\n":                          {0, false, false},
		"a LOGIN {99999999999999999999}": {-1, false, true},
		"":                               {0, false, false},
	} {
		size, nonSync, ok := literalAt([]byte(line))
		if size != want.size || nonSync != want.nonSync || ok != want.ok {
			t.Errorf("literalAt(%q) = %d %v %v, want %+v", line, size, nonSync, ok, want)
		}
	}
}

func TestParseCommand(t *testing.T) {
	for line, want := range map[string][2]string{
		"a1 login x y\r\n":     {"a1", "LOGIN"},
		"x uid fetch 1 (f)\n":  {"x", "UID FETCH"},
		"+ bad\r\n":            {"*", ""},
		"onlytag\r\n":          {"*", ""},
		"t{ CAPABILITY\r\n":    {"*", ""},
		"T STARTTLS\r\n":       {"T", "STARTTLS"},
		"T AUTHENTICATE P\r\n": {"T", "AUTHENTICATE"},
	} {
		tag, cmd, _ := parseCommand([]byte(line))
		if tag != want[0] || cmd != want[1] {
			t.Errorf("parseCommand(%q) = %q %q, want %q", line, tag, cmd, want)
		}
	}
}

// FuzzScanner feeds the scanner arbitrary client input in arbitrary chunks,
// with arbitrary answers from imapserver (continuation request or not),
// and checks that it never panics, loses or invents a byte, and never
// hands imapserver a command line announcing a buffered literal over the
// limit.
func FuzzScanner(f *testing.F) {
	f.Add([]byte("a LOGIN {5000}\r\nb NOOP\r\n"), []byte{3, 1, 0})
	f.Add([]byte("a LOGIN {5}\r\nalice {9000}\r\n"), []byte{200, 1, 1})
	f.Add([]byte("a APPEND INBOX {10}\r\n0123456789\r\nb APPEND {5000}\r\n"), []byte{7, 1})
	f.Add([]byte("a AUTHENTICATE PLAIN !!\r\nb AUTHENTICATE PLAIN\r\nAAAA\r\n"), []byte{0, 1, 1})
	f.Add([]byte("s STARTTLS\r\nx LOGIN a b\r\n"), []byte{1})
	f.Add([]byte("a LOGIN {3+}\r\nabc {4+}\r\nabcd\r\n"), []byte{255})
	f.Add(append([]byte("a LOGIN "), append(bytes.Repeat([]byte("x"), 3*maxLine), []byte(" {5000}\r\n")...)...), []byte{100, 50})
	f.Add([]byte("i IDLE\r\nDONE {99999}\r\n"), []byte{1, 1})
	f.Fuzz(func(t *testing.T, input, choices []byte) {
		s := newScanner()
		choice := func(i int) byte {
			if len(choices) == 0 {
				return 0
			}
			return choices[i%len(choices)]
		}
		var consumed []byte // delivered or dropped, in order
		checked := 0
		fed := 0
		for step := 0; step < 10*len(input)+100; step++ {
			cont := choice(step)&1 == 1
			v := s.next(cont)
			switch v.kind {
			case needInput:
				if fed == len(input) {
					rest := append(append(append([]byte(nil), consumed...), s.tail...), s.in...)
					if !bytes.Equal(rest, input) {
						t.Fatalf("bytes lost or invented: %q, input %q", rest, input)
					}
					return
				}
				n := min(len(input)-fed, int(choice(step+1))+1)
				s.push(input[fed : fed+n])
				fed += n
			case deliver:
				if v.newSegment && !v.raw && s.cmd != "APPEND" && bytes.HasSuffix(v.data, []byte("\n")) {
					if size, _, ok := literalAt(v.data); ok && (size < 0 || size > bufferedLiteralMax) {
						t.Fatalf("delivered a command line announcing a %d-byte literal: %q", size, v.data)
					}
				}
				consumed = append(consumed, v.data...)
			case tooBig, badSASL:
				consumed = append(consumed, s.held...)
				s.drop()
			case startTLS:
				if choice(step)&2 == 0 {
					consumed = append(consumed, s.release().data...)
				} else {
					consumed = append(consumed, s.held...)
					s.drop()
					consumed = append(consumed, s.in...)
					s.discardInput()
				}
			}
			if len(consumed) > len(input) || !bytes.Equal(consumed[checked:], input[checked:len(consumed)]) {
				t.Fatalf("handed out %q, not a prefix of the input %q", consumed, input)
			}
			checked = len(consumed)
		}
		t.Fatalf("no progress after %d steps", 10*len(input)+100)
	})
}

// TestScannerStreaming: a long line is handed out in pieces as it comes,
// and only its tail is held back.
func TestScannerStreaming(t *testing.T) {
	s := newScanner()
	long := "a LOGIN " + strings.Repeat("x", 2*maxLine)
	s.push([]byte(long))
	var got []byte
	for {
		v := s.next(false)
		if v.kind != deliver {
			break
		}
		got = append(got, v.data...)
	}
	if len(got) != len(long)-tailLen {
		t.Fatalf("handed out %d of %d bytes before the end of the line", len(got), len(long))
	}
	s.push([]byte(" {5}\r\n"))
	v := s.next(false)
	if v.kind != deliver || !strings.HasSuffix(string(v.data), " {5}\r\n") {
		t.Fatalf("end of the line: %+v", v)
	}
	// The literal was accepted ("+"): its data passes unparsed.
	s.push([]byte("{9999}\r\n"))
	if v := s.next(true); v.kind != deliver || string(v.data) != "{9999" {
		t.Fatalf("literal data: %+v %q", v, v.data)
	}
}
