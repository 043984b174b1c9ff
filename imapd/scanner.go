package imapd

import (
	"bytes"
	"encoding/base64"
	"strconv"
)

// scanner follows the client's side of an IMAP connection just enough to
// catch what imapserver (go-imap v2 beta) gets wrong before it sees it:
//
//   - A literal over the limit for a command that buffers it (every literal
//     but APPEND's message: imapserver refuses those over 4096 bytes, then
//     waits for data the client will never send, so the client hears
//     nothing). The front answers NO [TOOBIG] itself and drops the command,
//     or, when imapserver has already read part of the command, answers
//     and hangs up.
//   - AUTHENTICATE with an initial response that is not base64
//     (imapserver answers NO [SERVERBUG]): RFC 9051 §6.2.2 wants a tagged
//     BAD, as imapserver already gives for such a continuation line.
//   - STARTTLS, which the front performs itself (see frontConn).
//
// Input is cut into segments: a line up to its LF, or literal data. A
// segment is handed to imapserver whole before the next is looked at
// (imapserver reads only when it has used up what it was given), so the
// first thing imapserver writes after a segment is its answer to it: a
// continuation request ("+") after a synchronising literal announcement
// means the literal's data follows; after an AUTHENTICATE or IDLE line it
// means the next line is a SASL response or DONE, not a command.
type scanner struct {
	in []byte // received, not yet handed out

	first       bool   // the next line starts a command
	tag, cmd    string // of the command being read
	cmdLine     string // the command's first line without its end (for APPEND)
	litLeft     int64  // literal data still to hand out unparsed
	pendingSync int64  // a synchronising literal of this size ended the last line (-1: none)
	afterLit    bool   // literal data ended: the next line continues the command, whatever was written

	long    bool   // streaming a line longer than maxLine
	longRaw bool   // ...that is a continuation response: no literal to look for
	tail    []byte // its last bytes, held back until its end is seen

	held []byte // a line waiting for the caller's decision (see verdict)
}

const (
	// maxLine is the longest line the scanner holds whole; longer ones
	// are streamed, keeping only their tail.
	maxLine = 8 << 10
	// tailLen holds back enough of a streamed line for "{N+}\r\n".
	tailLen = 32
	// bufferedLiteralMax is imapserver's limit on literals it buffers
	// (imapserver/conn.go checkBufferedLiteral).
	bufferedLiteralMax = 4096
)

func newScanner() *scanner { return &scanner{first: true, pendingSync: -1} }

// verdictKind is what the caller must do next.
type verdictKind int

const (
	needInput verdictKind = iota // read more from the client and push it
	deliver                      // hand data to imapserver
	tooBig                       // answer NO [TOOBIG]; drop the line (or hang up when hangUp)
	badSASL                      // answer BAD; drop the line
	startTLS                     // a STARTTLS command: perform it, or release it to imapserver
)

type verdict struct {
	kind       verdictKind
	data       []byte // deliver: the bytes (the caller hands out all of them before calling next again)
	newSegment bool   // deliver: data starts a new line (imapserver's next output answers it)
	raw        bool   // deliver: a continuation response (SASL, IDLE's DONE), not a command line
	tag        string
	size       int64 // tooBig: the literal's size ("" for an unparsable one: -1)
	hangUp     bool  // tooBig: imapserver has read part of the command: end the connection
}

// push adds input received from the client.
func (s *scanner) push(b []byte) { s.in = append(s.in, b...) }

// next decides what to do with the input. cont reports whether imapserver's
// first output after the last segment handed out was a continuation
// request. A tooBig, badSASL or startTLS verdict holds its line: the caller
// calls drop or release before next.
func (s *scanner) next(cont bool) verdict {
	if s.held != nil {
		panic("imapd: scanner: held line not dropped or released")
	}
	// Resolve what the last line announced.
	if s.pendingSync >= 0 {
		if cont {
			s.litLeft = s.pendingSync // the literal was accepted: its data follows
		} else {
			s.first = true // refused: the command is over
		}
		s.pendingSync = -1
		cont = false
	}
	if s.litLeft > 0 {
		if len(s.in) == 0 {
			return verdict{kind: needInput}
		}
		n := int(min(int64(len(s.in)), s.litLeft))
		s.litLeft -= int64(n)
		s.afterLit = s.litLeft == 0
		return verdict{kind: deliver, data: s.take(n)}
	}
	if s.long {
		return s.streamLong()
	}
	if s.afterLit {
		cont = false // the "+" that let the literal in is no answer to this line
	}
	i := bytes.IndexByte(s.in, '\n')
	if i < 0 {
		if len(s.in) <= maxLine {
			return verdict{kind: needInput}
		}
		// Too long to hold: stream it, keeping its tail for the check.
		s.long, s.longRaw, s.afterLit = true, cont, false
		if s.first && !cont {
			s.tag, s.cmd, s.cmdLine = parseCommand(s.in)
		}
		v := s.streamLong()
		v.newSegment = true
		return v
	}
	s.afterLit = false
	line := s.in[:i+1]
	if cont {
		// A SASL response or IDLE's DONE: imapserver reads it as a line.
		return verdict{kind: deliver, data: s.take(len(line)), newSegment: true, raw: true}
	}
	starts := s.first
	if starts {
		s.tag, s.cmd, s.cmdLine = parseCommand(line)
	}
	size, nonSync, isLit := literalAt(line)
	if starts && !isLit {
		switch s.cmd {
		case "STARTTLS":
			if isBare(line, len(s.tag)+len(" STARTTLS")) {
				return s.hold(line, verdict{kind: startTLS, tag: s.tag})
			}
		case "AUTHENTICATE":
			if ir, ok := initialResponse(line, len(s.tag)+len(" AUTHENTICATE")); ok && !validSASL(ir) {
				return s.hold(line, verdict{kind: badSASL, tag: s.tag})
			}
		}
	}
	if isLit && (size < 0 || size > s.literalLimit(starts)) {
		// A synchronising literal in a command's first line can be
		// refused cleanly: the client sends nothing more for it.
		return s.hold(line, verdict{kind: tooBig, tag: s.tag, size: size, hangUp: !starts || nonSync})
	}
	s.first = !isLit
	if isLit {
		if nonSync {
			s.litLeft = size
		} else {
			s.pendingSync = size
		}
	}
	return verdict{kind: deliver, data: s.take(len(line)), newSegment: true}
}

// streamLong hands out a long line, holding back its last tailLen bytes
// until its end shows whether it announces a literal.
func (s *scanner) streamLong() verdict {
	if s.longRaw {
		n := len(s.in)
		if i := bytes.IndexByte(s.in, '\n'); i >= 0 {
			n = i + 1
			s.long = false
		}
		if n == 0 {
			return verdict{kind: needInput}
		}
		return verdict{kind: deliver, data: s.take(n)}
	}
	if i := bytes.IndexByte(s.in, '\n'); i >= 0 {
		end := append(s.tail, s.in[:i+1]...)
		s.in = s.in[i+1:]
		s.tail = nil
		s.long = false
		size, nonSync, isLit := literalAt(end)
		if isLit && (size < 0 || size > s.literalLimit(false)) {
			s.held = end
			return verdict{kind: tooBig, tag: s.tag, size: size, hangUp: true}
		}
		s.first = !isLit
		if isLit {
			if nonSync {
				s.litLeft = size
			} else {
				s.pendingSync = size
			}
		}
		return verdict{kind: deliver, data: end}
	}
	if len(s.in) == 0 {
		return verdict{kind: needInput}
	}
	// Hand out all but the last tailLen bytes of tail+input.
	all := append(s.tail, s.in...)
	s.in = s.in[:0]
	if len(all) <= tailLen {
		s.tail = all
		return verdict{kind: needInput}
	}
	cut := len(all) - tailLen
	s.tail = append([]byte(nil), all[cut:]...)
	return verdict{kind: deliver, data: all[:cut]}
}

// literalLimit is the largest literal the command takes where it is:
// APPEND's message is imapserver's to judge (it answers NO [TOOBIG] over
// its APPENDLIMIT correctly); everything else is buffered, APPEND's
// mailbox name too ("tag APPEND {N}").
func (s *scanner) literalLimit(firstLine bool) int64 {
	if s.cmd == "APPEND" && !(firstLine && isMailboxLiteral(s.cmdLine, s.tag)) {
		return 1<<63 - 1
	}
	return bufferedLiteralMax
}

// isMailboxLiteral reports whether APPEND's first line ends right after the
// command name with a literal: then that literal is the mailbox name.
func isMailboxLiteral(cmdLine, tag string) bool {
	rest := cmdLine[min(len(cmdLine), len(tag)+len(" APPEND ")):]
	return len(rest) > 0 && rest[0] == '{'
}

func (s *scanner) hold(line []byte, v verdict) verdict {
	s.held = s.take(len(line))
	return v
}

// drop discards the held line; the next line starts a command.
func (s *scanner) drop() {
	s.held = nil
	s.first = true
	s.pendingSync, s.litLeft = -1, 0
}

// release hands the held line to imapserver after all.
func (s *scanner) release() verdict {
	line := s.held
	s.held = nil
	s.first = true
	return verdict{kind: deliver, data: line, newSegment: true}
}

// discardInput drops whatever the client sent after the held line
// (STARTTLS: nothing sent in the clear may count after it).
func (s *scanner) discardInput() { s.in = s.in[:0] }

func (s *scanner) take(n int) []byte {
	out := append([]byte(nil), s.in[:n]...)
	s.in = s.in[n:]
	if len(s.in) == 0 {
		s.in = s.in[:0:0] // let a large buffer go
	}
	return out
}

// trimEOL strips LF, CR and the one space imapserver accepts before them.
func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return bytes.TrimSuffix(line, []byte(" "))
}

// literalAt parses a literal announcement ending a line: "{N}" or "{N+}"
// (literal8 "~{N}" included). size is -1 when N does not fit an int64.
func literalAt(line []byte) (size int64, nonSync, ok bool) {
	l := trimEOL(line)
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false, false
	}
	l = l[:len(l)-1]
	if l[len(l)-1] == '+' {
		nonSync = true
		l = l[:len(l)-1]
	}
	open := bytes.LastIndexByte(l, '{')
	if open < 0 || open == len(l)-1 {
		return 0, false, false
	}
	digits := l[open+1:]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false, false
		}
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return -1, nonSync, true
	}
	return n, nonSync, true
}

// parseCommand returns a command line's tag, its command name in upper case
// (with UID's subcommand: "UID FETCH") and the line without its end.
func parseCommand(line []byte) (tag, cmd, text string) {
	l := trimEOL(line)
	if i := bytes.IndexByte(l, '\n'); i >= 0 { // a long line's first chunk
		l = l[:i]
	}
	text = string(l)
	fields := bytes.SplitN(l, []byte(" "), 4)
	if len(fields) < 2 || !validTag(fields[0]) {
		return "*", "", text
	}
	tag = string(fields[0])
	cmd = string(bytes.ToUpper(fields[1]))
	if cmd == "UID" && len(fields) > 2 {
		cmd += " " + string(bytes.ToUpper(fields[2]))
	}
	return tag, cmd, text
}

// validTag accepts what imapserver reads as a tag (an atom without "+").
func validTag(b []byte) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`(){%*"\]+`), c) >= 0 {
			return false
		}
	}
	return true
}

// isBare reports whether a command line has nothing after its name.
func isBare(line []byte, nameEnd int) bool { return len(trimEOL(line)) == nameEnd }

// initialResponse returns the initial response of "tag AUTHENTICATE mech
// IR", as imapserver reads it.
func initialResponse(line []byte, nameEnd int) (string, bool) {
	l := trimEOL(line)
	if len(l) <= nameEnd+1 || l[nameEnd] != ' ' {
		return "", false
	}
	rest := l[nameEnd+1:]
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 || sp == len(rest)-1 {
		return "", false
	}
	return string(rest[sp+1:]), true
}

// validSASL reports whether imapserver could decode a SASL response.
func validSASL(s string) bool {
	if s == "=" {
		return true
	}
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil
}
