package gateway

import (
	"errors"
	"fmt"
	"strings"

	"github.com/bmgate/bmgate/bmcore/address"
)

// BroadcastLocalPart is the local part of the special recipient
// broadcast@<domain>: mail sent to it is published as a broadcast from the
// sender's identity to everyone subscribed to it.
const BroadcastLocalPart = "broadcast"

// Errors of MailToBM. The text of ErrNotBMAddress and ErrWrongDomain is
// written for the person who typed the address.
var (
	// ErrNotBMAddress: the local part is not BM-… (it may be an alias).
	ErrNotBMAddress = errors.New("not a Bitmessage address (expected BM-…@domain)")
	// ErrWrongDomain: the address is not under the gateway's mail domain.
	ErrWrongDomain = errors.New("not under this gateway's mail domain; bmgate does not relay to other mail servers")
	// ErrBadMailAddress: the text is not local@domain at all.
	ErrBadMailAddress = errors.New("not a mail address")
)

// MailToBM maps a mail address BM-xxx@domain to the Bitmessage address
// BM-xxx, checking it with address.Decode. The domain is compared without
// regard to case; the local part is base58 and so case-sensitive: a mail
// program that lower-cased it gets an error that says so (the address
// package recognises one-case text). Only addresses @domain are accepted,
// never a bare BM-xxx. The result is the canonical text of the address.
func MailToBM(addr, domain string) (string, error) {
	local, dom, err := splitMailAddress(addr)
	if err != nil {
		return "", err
	}
	if !strings.EqualFold(dom, domain) {
		return "", fmt.Errorf("%s: %w", addr, ErrWrongDomain)
	}
	if len(local) < len(address.Prefix) || !strings.EqualFold(local[:len(address.Prefix)], address.Prefix) {
		return "", fmt.Errorf("%s: %w", addr, ErrNotBMAddress)
	}
	a, err := address.Decode(local)
	if err != nil {
		// address.Decode names the text and explains what is wrong,
		// including a changed letter case.
		return "", err
	}
	return a.String(), nil
}

// BMToMail maps a Bitmessage address to its mail form BM-xxx@domain.
func BMToMail(bm, domain string) string {
	return bm + "@" + domain
}

// IsBroadcastAddress reports whether addr is broadcast@domain (both parts
// compared without regard to case).
func IsBroadcastAddress(addr, domain string) bool {
	local, dom, err := splitMailAddress(addr)
	return err == nil && strings.EqualFold(dom, domain) && strings.EqualFold(local, BroadcastLocalPart)
}

// splitMailAddress splits local@domain at the last "@". Quoted local parts
// and source routes are not Bitmessage addresses and are refused.
func splitMailAddress(addr string) (local, domain string, err error) {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", "", fmt.Errorf("%q: %w", addr, ErrBadMailAddress)
	}
	return addr[:i], addr[i+1:], nil
}
