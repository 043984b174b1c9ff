//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package main

import (
	"errors"
	"os"
)

// isTerminal is false where bmgate cannot turn off echo: the password is
// read as one line of input, as from a pipe.
func isTerminal(*os.File) bool { return false }

func echoOff(*os.File) (func(), error) { return nil, errors.ErrUnsupported }
