package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/bmcore/address"
)

// Addresses from docs/protocol.md §7.6 (PyBitmessage samples, recomputed).
const (
	addrV4    = "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK" // TIGER v4
	addrV3    = "BM-2DBPTgeSawWYZceFD69AbDT5q4iUWtj1ZN" // TIGER v3
	addrV2    = "BM-onkVu1KKL2UaUss5Upg9vXmqd3esTmV79"  // PyB sample keys v2
	addrChan  = "BM-2cWy7cvHoq3f1rYMerRJp8PT653jjSuEdY" // chan "bitmessage"
	domain    = "bmgate.local"
	otherAddr = "BM-2cW67GEKkHGonXKZLCzouLLxnLym3azS8r" // chan "general"
)

func TestMailToBM(t *testing.T) {
	for _, a := range []string{addrV4, addrV3, addrV2, addrChan} {
		got, err := MailToBM(a+"@"+domain, domain)
		if err != nil || got != a {
			t.Errorf("MailToBM(%s) = %q, %v", a, got, err)
		}
		if back := BMToMail(got, domain); back != a+"@"+domain {
			t.Errorf("BMToMail = %q", back)
		}
	}
	// Domain case does not matter; angle brackets and spaces are tolerated.
	if got, err := MailToBM(" <"+addrV4+"@BMGate.LOCAL> ", domain); err != nil || got != addrV4 {
		t.Errorf("domain case: %q, %v", got, err)
	}
}

func TestMailToBMErrors(t *testing.T) {
	tests := []struct {
		in      string
		is      error  // sentinel, or nil
		mention string // text the error must contain
	}{
		{strings.ToLower(addrV4) + "@" + domain, address.ErrInvalidCharacters, "case"},
		{"BM-" + strings.ToLower(addrV4[3:]) + "@" + domain, nil, "case-sensitive"},
		{strings.ToUpper(addrV4) + "@" + domain, nil, "case"},
		{addrV4[:len(addrV4)-1] + "V@" + domain, address.ErrChecksum, "checksum"},
		{addrV4 + "@example.org", ErrWrongDomain, "relay"},
		{"alice@" + domain, ErrNotBMAddress, "BM-"},
		{addrV4, ErrBadMailAddress, ""},
		{"@" + domain, ErrBadMailAddress, ""},
		{addrV4 + "@", ErrBadMailAddress, ""},
		{"BM-0OIl@" + domain, address.ErrInvalidCharacters, ""},
	}
	for _, tc := range tests {
		_, err := MailToBM(tc.in, domain)
		if err == nil {
			t.Errorf("MailToBM(%q) succeeded", tc.in)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("MailToBM(%q) = %v, want %v", tc.in, err, tc.is)
		}
		if !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("MailToBM(%q) = %v, want a mention of %q", tc.in, err, tc.mention)
		}
	}
}

func TestIsBroadcastAddress(t *testing.T) {
	for in, want := range map[string]bool{
		"broadcast@" + domain:         true,
		"Broadcast@BMGATE.local":      true,
		"broadcast@example.org":       false,
		"broadcasts@" + domain:        false,
		addrV4 + "@" + domain:         false,
		"broadcast":                   false,
		"<broadcast@" + domain + ">":  true,
		"broadcast@" + domain + ".eu": false,
	} {
		if got := IsBroadcastAddress(in, domain); got != want {
			t.Errorf("IsBroadcastAddress(%q) = %v", in, got)
		}
	}
}
