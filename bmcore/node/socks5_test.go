package node

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSOCKS5 is a minimal RFC 1928/1929 server on loopback that connects
// to the requested target (only 127.0.0.1 or "localhost" targets) and pipes.
type fakeSOCKS5 struct {
	ln       net.Listener
	user     string // "" = no authentication
	pass     string
	reply    byte // non-zero: refuse CONNECT with this code
	mu       sync.Mutex
	requests []string // "atyp:host:port"
	wg       sync.WaitGroup
}

func startSOCKS5(t *testing.T, user, pass string, reply byte) *fakeSOCKS5 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeSOCKS5{ln: ln, user: user, pass: pass, reply: reply}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); s.wg.Wait() })
	return s
}

func (s *fakeSOCKS5) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	want := byte(0)
	if s.user != "" {
		want = 2
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered {
		_, _ = c.Write([]byte{5, 0xFF})
		return
	}
	_, _ = c.Write([]byte{5, want})
	if want == 2 {
		var v [2]byte
		if _, err := io.ReadFull(c, v[:]); err != nil {
			return
		}
		u := make([]byte, v[1])
		_, _ = io.ReadFull(c, u)
		var pl [1]byte
		_, _ = io.ReadFull(c, pl[:])
		p := make([]byte, pl[0])
		_, _ = io.ReadFull(c, p)
		if string(u) != s.user || string(p) != s.pass {
			_, _ = c.Write([]byte{1, 1})
			return
		}
		_, _ = c.Write([]byte{1, 0})
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil || req[1] != 1 {
		return
	}
	var host string
	switch req[3] {
	case 1:
		b := make([]byte, 4)
		_, _ = io.ReadFull(c, b)
		host = net.IP(b).String()
	case 4:
		b := make([]byte, 16)
		_, _ = io.ReadFull(c, b)
		host = net.IP(b).String()
	case 3:
		var l [1]byte
		_, _ = io.ReadFull(c, l[:])
		b := make([]byte, l[0])
		_, _ = io.ReadFull(c, b)
		host = string(b)
	}
	var pb [2]byte
	_, _ = io.ReadFull(c, pb[:])
	port := binary.BigEndian.Uint16(pb[:])
	s.mu.Lock()
	s.requests = append(s.requests, strconv.Itoa(int(req[3]))+":"+net.JoinHostPort(host, strconv.Itoa(int(port))))
	s.mu.Unlock()
	fail := func(code byte) { _, _ = c.Write([]byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0}) }
	if s.reply != 0 {
		fail(s.reply)
		return
	}
	if host != "127.0.0.1" && host != "localhost" {
		fail(2) // never leave loopback
		return
	}
	up, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 5*time.Second)
	if err != nil {
		fail(5)
		return
	}
	defer up.Close()
	// Reply with a domain-type bound address to exercise that branch.
	_, _ = c.Write([]byte{5, 0, 0, 3, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0x1F, 0x90})
	_ = c.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); _ = up.Close(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); _ = c.Close(); done <- struct{}{} }()
	<-done
	<-done
}

func (s *fakeSOCKS5) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func TestSOCKS5Outbound(t *testing.T) {
	for _, auth := range []struct{ user, pass string }{{"", ""}, {"alice", "s3cret"}} {
		t.Run("user="+auth.user, func(t *testing.T) {
			target := startNode(t, testConfig(t))
			proxy := startSOCKS5(t, auth.user, auth.pass, 0)
			cfg := testConfig(t)
			cfg.SOCKS5 = proxy.ln.Addr().String()
			cfg.SOCKS5User, cfg.SOCKS5Password = auth.user, auth.pass
			port := strconv.Itoa(target.Addr().(*net.TCPAddr).Port)
			cfg.Peers = []string{"localhost:" + port}
			n := startNode(t, cfg)
			waitFor(t, 10*time.Second, "connected through the proxy", func() bool { return n.Stats().PeersOutbound == 1 })
			// The name went to the proxy unresolved (ATYP 3).
			if got := proxy.seen(); len(got) == 0 || got[0] != "3:localhost:"+port {
				t.Fatalf("proxy saw %v", got)
			}
		})
	}
}

func TestSOCKS5Errors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dialProxy := func(s *fakeSOCKS5) net.Conn {
		c, err := net.Dial("tcp", s.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	refused := startSOCKS5(t, "", "", 5)
	err := socks5Connect(ctx, dialProxy(refused), "127.0.0.1:1", "", "")
	if !errors.Is(err, ErrSOCKS5) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("refused: %v", err)
	}
	authed := startSOCKS5(t, "bob", "pw", 0)
	if err := socks5Connect(ctx, dialProxy(authed), "127.0.0.1:1", "bob", "wrong"); !errors.Is(err, ErrSOCKS5) {
		t.Fatalf("bad password: %v", err)
	}
	if err := socks5Connect(ctx, dialProxy(authed), "127.0.0.1:1", "", ""); !errors.Is(err, ErrSOCKS5) {
		t.Fatalf("no credentials for an authenticating proxy: %v", err)
	}
	// IPv4 and IPv6 targets use ATYP 1 and 4.
	open := startSOCKS5(t, "", "", 2)
	_ = socks5Connect(ctx, dialProxy(open), "127.0.0.1:8444", "", "")
	_ = socks5Connect(ctx, dialProxy(open), "[2001:db8::1]:8444", "", "")
	_ = socks5Connect(ctx, dialProxy(open), "quzwelsuziwqgpt2.onion:8444", "", "")
	got := open.seen()
	want := []string{"1:127.0.0.1:8444", "4:[2001:db8::1]:8444", "3:quzwelsuziwqgpt2.onion:8444"}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("requests %v, want %v", got, want)
	}
	// A proxy that never answers is bounded by the context.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c, err := net.Dial("tcp", silent.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	start := time.Now()
	if err := socks5Connect(short, c, "127.0.0.1:1", "", ""); err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("silent proxy: %v after %v", err, time.Since(start))
	}
}
