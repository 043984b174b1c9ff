//go:build !unix

package main

// openFileLimit is unknown here: connection caps take their fixed defaults.
func openFileLimit() uint64 { return 0 }
