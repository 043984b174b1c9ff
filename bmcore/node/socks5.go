package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// ErrSOCKS5 wraps every failure of the SOCKS5 handshake.
var ErrSOCKS5 = errors.New("node: socks5")

// socks5Replies are the REP codes of RFC 1928 §6.
var socks5Replies = [...]string{
	1: "general SOCKS server failure",
	2: "connection not allowed by ruleset",
	3: "network unreachable",
	4: "host unreachable",
	5: "connection refused",
	6: "TTL expired",
	7: "command not supported",
	8: "address type not supported",
}

// socks5Connect runs a SOCKS5 CONNECT to target ("host:port") over conn, a
// fresh connection to the proxy (RFC 1928). With a user name it
// authenticates with username/password (RFC 1929) and offers nothing else,
// so a proxy that isolates streams by credentials (Tor) cannot fall back to
// no authentication. Host names are sent as names and resolved by the proxy.
func socks5Connect(ctx context.Context, conn net.Conn, target, user, pass string) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	err := socks5Handshake(conn, target, user, pass)
	if !stop() {
		return fmt.Errorf("%w: %w", ErrSOCKS5, ctx.Err())
	}
	if err != nil {
		return err
	}
	return conn.SetDeadline(time.Time{})
}

func socks5Handshake(conn net.Conn, target, user, pass string) error {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("%w: target %q: %w", ErrSOCKS5, target, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("%w: target port %q: %w", ErrSOCKS5, portStr, err)
	}
	method := byte(0x00)
	if user != "" {
		method = 0x02
	}
	if _, err := conn.Write([]byte{5, 1, method}); err != nil {
		return fmt.Errorf("%w: greeting: %w", ErrSOCKS5, err)
	}
	var rep [2]byte
	if _, err := io.ReadFull(conn, rep[:]); err != nil {
		return fmt.Errorf("%w: method reply: %w", ErrSOCKS5, err)
	}
	if rep[0] != 5 {
		return fmt.Errorf("%w: proxy speaks version %d", ErrSOCKS5, rep[0])
	}
	if rep[1] != method {
		return fmt.Errorf("%w: proxy refused authentication method %d (chose %d)", ErrSOCKS5, method, rep[1])
	}
	if method == 0x02 {
		req := append([]byte{1, byte(len(user))}, user...)
		req = append(append(req, byte(len(pass))), pass...)
		if _, err := conn.Write(req); err != nil {
			return fmt.Errorf("%w: authentication: %w", ErrSOCKS5, err)
		}
		if _, err := io.ReadFull(conn, rep[:]); err != nil {
			return fmt.Errorf("%w: authentication reply: %w", ErrSOCKS5, err)
		}
		if rep[1] != 0 {
			return fmt.Errorf("%w: authentication failed", ErrSOCKS5)
		}
	}

	req := []byte{5, 1, 0}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Zone() == "" {
		if ip.Is4() || ip.Is4In6() {
			b := ip.Unmap().As4()
			req = append(append(req, 1), b[:]...)
		} else {
			b := ip.As16()
			req = append(append(req, 4), b[:]...)
		}
	} else {
		if len(host) == 0 || len(host) > 255 {
			return fmt.Errorf("%w: host name %q", ErrSOCKS5, host)
		}
		req = append(append(req, 3, byte(len(host))), host...)
	}
	req = append(req, byte(port>>8), byte(port))
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("%w: connect request: %w", ErrSOCKS5, err)
	}
	var head [4]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return fmt.Errorf("%w: connect reply: %w", ErrSOCKS5, err)
	}
	if head[0] != 5 {
		return fmt.Errorf("%w: reply version %d", ErrSOCKS5, head[0])
	}
	if head[1] != 0 {
		msg := "unknown error"
		if int(head[1]) < len(socks5Replies) {
			msg = socks5Replies[head[1]]
		}
		return fmt.Errorf("%w: connect to %s: %s (%d)", ErrSOCKS5, target, msg, head[1])
	}
	var skip int
	switch head[3] {
	case 1:
		skip = 4
	case 4:
		skip = 16
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return fmt.Errorf("%w: bound address: %w", ErrSOCKS5, err)
		}
		skip = int(l[0])
	default:
		return fmt.Errorf("%w: bound address type %d", ErrSOCKS5, head[3])
	}
	if _, err := io.ReadFull(conn, make([]byte, skip+2)); err != nil {
		return fmt.Errorf("%w: bound address: %w", ErrSOCKS5, err)
	}
	return nil
}
