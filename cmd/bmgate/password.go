package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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

// promptSecret asks for a secret (what: "password") with echo off, twice
// when repeat is set.
func (c *cli) promptSecret(tty *os.File, what string, repeat bool) (string, error) {
	restore, err := echoOff(tty)
	if err != nil {
		return "", fmt.Errorf("turn off terminal echo: %w", err)
	}
	defer restore()
	r := bufio.NewReader(tty)
	fmt.Fprintf(c.stderr, "%s%s: ", strings.ToUpper(what[:1]), what[1:])
	first, err := readSecretLine(r, what)
	fmt.Fprintln(c.stderr)
	if err != nil || !repeat {
		return first, err
	}
	fmt.Fprintf(c.stderr, "Repeat %s: ", what)
	second, err := readSecretLine(r, what)
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", err
	}
	if first != second {
		return "", fmt.Errorf("%ss do not match", what)
	}
	return first, nil
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
	pw := strings.TrimSuffix(b.String(), "\r")
	if pw == "" {
		return "", fmt.Errorf("empty %s", what)
	}
	return pw, nil
}
