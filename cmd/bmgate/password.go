package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// maxPasswordLen bounds what is read as a password.
const maxPasswordLen = 1024

// readPassword returns the password for user add/passwd: the first line of
// file, or else one line of standard input. On a terminal it prompts twice
// with echo off.
func (c *cli) readPassword(file string) (string, error) {
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("open password file: %w", err)
		}
		defer f.Close()
		return readPasswordLine(f)
	}
	if f, ok := c.stdin.(*os.File); ok && isTerminal(f) {
		return c.promptPassword(f)
	}
	return readPasswordLine(c.stdin)
}

func (c *cli) promptPassword(tty *os.File) (string, error) {
	return c.promptSecret(tty, "password", true)
}

// isTerminal reports whether f is a terminal on which bmgate can turn off
// echo; elsewhere a secret is read as one line of input, as from a pipe.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// promptSecret asks for a secret (what: "password") with echo off, twice
// when repeat is set.
func (c *cli) promptSecret(tty *os.File, what string, repeat bool) (string, error) {
	fmt.Fprintf(c.stderr, "%s%s: ", strings.ToUpper(what[:1]), what[1:])
	first, err := readSecretNoEcho(tty, what)
	fmt.Fprintln(c.stderr)
	if err != nil || !repeat {
		return first, err
	}
	fmt.Fprintf(c.stderr, "Repeat %s: ", what)
	second, err := readSecretNoEcho(tty, what)
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", err
	}
	if first != second {
		return "", fmt.Errorf("%ss do not match", what)
	}
	return first, nil
}

// readSecretNoEcho reads one line from the terminal tty with echo off
// (term.ReadPassword restores the terminal's state before it returns) and
// checks it as readSecretLine does.
func readSecretNoEcho(tty *os.File, what string) (string, error) {
	b, err := term.ReadPassword(int(tty.Fd()))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	return checkSecret(strings.TrimSuffix(string(b), "\r"), what)
}

// readPasswordLine reads one line without its line ending. Reading stops at
// the newline so a script can feed several commands through one pipe.
func readPasswordLine(r io.Reader) (string, error) { return readSecretLine(r, "password") }

// readSecretLine is readPasswordLine for any secret (what names it in errors).
func readSecretLine(r io.Reader, what string) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for b.Len() <= maxPasswordLen {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			b.WriteByte(buf[0])
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read %s: %w", what, err)
		}
	}
	if b.Len() > maxPasswordLen {
		return "", fmt.Errorf("%s longer than %d bytes", what, maxPasswordLen)
	}
	return checkSecret(strings.TrimSuffix(b.String(), "\r"), what)
}

// checkSecret refuses an empty secret or one over maxPasswordLen bytes.
func checkSecret(s, what string) (string, error) {
	if len(s) > maxPasswordLen {
		return "", fmt.Errorf("%s longer than %d bytes", what, maxPasswordLen)
	}
	if s == "" {
		return "", fmt.Errorf("empty %s", what)
	}
	return s, nil
}
