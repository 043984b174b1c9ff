package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/params"
)

// Version is the software version put in the default user agent.
const Version = "0.1.0"

// Config configures a Node. Zero values mean the documented defaults.
type Config struct {
	// Network is the network profile (magic, port, minimum PoW, seeds). Required.
	Network *params.Network
	// ListenAddr is the TCP address to listen on ("" = don't listen).
	ListenAddr string
	// Peers are fixed peers (host:port), always kept connected.
	Peers []string
	// Bootstrap allows the hard-coded seeds and the bootstrap DNS names of
	// Network when no known node answers (docs/protocol.md §15.1).
	Bootstrap bool
	// MaxOutbound is the outbound connection target (default 8). Fixed peers
	// count towards it but are dialled regardless. Negative: dial only fixed
	// peers and Connect requests, never known nodes.
	MaxOutbound int
	// MaxInbound caps inbound connections (default 200).
	MaxInbound int
	// Inventory stores objects. Required.
	Inventory inventory.Inventory
	// KnownNodes persists the peer list. Required.
	KnownNodes inventory.KnownNodes
	// SOCKS5 is "host:port" of a SOCKS5 proxy for every outbound connection
	// ("" = direct). Host names (bootstrap names, onions) are resolved by the
	// proxy, never locally.
	SOCKS5 string
	// SOCKS5User and SOCKS5Password select username/password authentication
	// (RFC 1929); empty means no authentication.
	SOCKS5User, SOCKS5Password string
	// Dial opens TCP connections (to peers, or to the SOCKS5 proxy). nil = net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock for protocol times (version timestamps, object expiry,
	// PoW TTL) and for the ack renewals of PyBitmessage connections
	// (AckRenewDelay and the bounds after it). nil = time.Now.
	Now func() time.Time
	// Logger receives the node's logs. nil = discard.
	Logger *slog.Logger
	// OnObject is called after a new valid object was stored (received or
	// published). Calls come in order from one node goroutine; a slow callback
	// delays later calls, and when more than notifyQueue objects are waiting
	// the extra notifications are dropped (counted in Stats). Treat it as a
	// wake-up: the inventory is the truth.
	OnObject func(inventory.StoredObject)
	// UserAgent is sent in version (default "/bmgate:<Version>/").
	UserAgent string
	// AllowPrivateAddrs accepts, advertises and dials loopback and private
	// addresses learned from addr messages and inbound peers. Off on the
	// real network (docs/protocol.md §15.2); tests on 127.0.0.1 and LANs turn it on.
	AllowPrivateAddrs bool
	// BanLoopback bans misbehaving inbound peers from loopback by IP. Off by
	// default because a local Tor daemon delivers every hidden-service peer
	// from 127.0.0.1: such peers are disconnected but not banned.
	BanLoopback bool

	// PingInterval: an established connection idle this long in both
	// directions gets a ping (default 300 s, as PyB).
	PingInterval time.Duration
	// HandshakeTimeout: a connection must finish version/verack within this
	// time; also the dial timeout (default 20 s).
	HandshakeTimeout time.Duration
	// IdleTimeout: an established connection that receives nothing for this
	// long is closed (default 10 min).
	IdleTimeout time.Duration
	// GetDataRetry: an object requested but not delivered within this time is
	// requested again, from another peer when possible (default 60 s, docs/protocol.md §4.4).
	GetDataRetry time.Duration
	// GetDataDelay: no getdata goes to a PyBitmessage peer during this time
	// after the handshake, because PyB discards getdata that arrive in its
	// first seconds (its anti-intersection window, docs/protocol.md §4.4). Other
	// peers are asked at once. Default 3 s; negative = none.
	GetDataDelay time.Duration
	// RotateInterval: one outbound connection (an inbound one when there is
	// no outbound) is closed and replaced after a
	// random time between RotateInterval and 3×RotateInterval (default 10 min,
	// so 10–30 min, docs/protocol.md §11). Negative disables rotation.
	RotateInterval time.Duration
	// AckRenewDelay and AckRenewJitter: a PyBitmessage 0.6.x peer announces
	// the ack of a msg it received only in the full inv of a new connection
	// (docs/interop-pybitmessage.md F1). So after such a peer fetched one of
	// the msgs published through Publish, its connection is closed, to be
	// re-established, after AckRenewDelay plus a random part of
	// AckRenewJitter (defaults 60 s and 30 s: 60–90 s). Negative
	// AckRenewDelay disables this; negative AckRenewJitter means no jitter.
	AckRenewDelay  time.Duration
	AckRenewJitter time.Duration
	// AckRenewPeerInterval: at most one such renewal per peer address within
	// this time; a fetch within it defers its renewal to the end of it
	// (default 10 min).
	AckRenewPeerInterval time.Duration
	// AckRenewMaxPerHour caps the renewals of all peers within any hour;
	// renewals over the cap are dropped (default 6).
	AckRenewMaxPerHour int
	// DialInterval is how often the connection manager looks for work (default 2 s).
	DialInterval time.Duration
	// RetryBackoff is the first wait before redialling a failed address; it
	// doubles per failure up to 30 min (fixed peers: up to 1 min). Default 30 s.
	RetryBackoff time.Duration
	// ExpireInterval is how often expired objects are deleted (default 1 h).
	ExpireInterval time.Duration
	// BanDuration is how long a misbehaving peer is refused (default 1 h).
	BanDuration time.Duration
	// WriteTimeout bounds one write to a peer (default 2 min).
	WriteTimeout time.Duration
	// InvBurst and InvRate bound the inventory hashes a peer may announce: a
	// token bucket of InvBurst hashes refilled at InvRate per second
	// (defaults 200 000 and 100). A peer that exceeds it is banned.
	InvBurst int
	InvRate  float64
	// MaxFetching bounds the announced objects tracked for download
	// (default 250 000). MaxFetchingPerPeer bounds those one connection may
	// announce (default MaxFetching/4; at most MaxFetching); announcements
	// over a peer's share are ignored. When the table is full, a peer under
	// its fair share (MaxFetching divided by the announcing peers) displaces
	// an entry of the peer holding the most. A request counts as unanswered
	// when the peer delivered nothing within GetDataRetry of it; a peer with
	// at least 100 unanswered requests, more than it answered, that has
	// delivered nothing it owed for two GetDataRetry periods is disconnected,
	// its misbehaviour score raised by 40 and its address rated down.
	MaxFetching        int
	MaxFetchingPerPeer int
}

// Errors returned by New and Start.
var (
	ErrConfig         = errors.New("node: invalid config")
	ErrAlreadyStarted = errors.New("node: already started")
	ErrClosed         = errors.New("node: closed")
)

func (c *Config) setDefaults() error {
	if c.Network == nil {
		return fmt.Errorf("%w: Network is required", ErrConfig)
	}
	if c.Inventory == nil || c.KnownNodes == nil {
		return fmt.Errorf("%w: Inventory and KnownNodes are required", ErrConfig)
	}
	if c.MaxOutbound == 0 {
		c.MaxOutbound = 8
	}
	if c.MaxInbound == 0 {
		c.MaxInbound = 200
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.UserAgent == "" {
		c.UserAgent = "/bmgate:" + Version + "/"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.PingInterval, 300*time.Second)
	def(&c.HandshakeTimeout, 20*time.Second)
	def(&c.IdleTimeout, 10*time.Minute)
	def(&c.GetDataRetry, 60*time.Second)
	def(&c.GetDataDelay, 3*time.Second)
	def(&c.RotateInterval, 10*time.Minute)
	def(&c.AckRenewDelay, 60*time.Second)
	def(&c.AckRenewJitter, 30*time.Second)
	def(&c.AckRenewPeerInterval, 10*time.Minute)
	if c.AckRenewJitter < 0 {
		c.AckRenewJitter = 0
	}
	if c.AckRenewMaxPerHour == 0 {
		c.AckRenewMaxPerHour = 6
	}
	if c.AckRenewMaxPerHour < 0 {
		return fmt.Errorf("%w: AckRenewMaxPerHour must not be negative", ErrConfig)
	}
	def(&c.DialInterval, 2*time.Second)
	def(&c.RetryBackoff, 30*time.Second)
	def(&c.ExpireInterval, time.Hour)
	def(&c.BanDuration, time.Hour)
	def(&c.WriteTimeout, 2*time.Minute)
	for name, d := range map[string]time.Duration{
		"PingInterval": c.PingInterval, "HandshakeTimeout": c.HandshakeTimeout,
		"IdleTimeout": c.IdleTimeout, "GetDataRetry": c.GetDataRetry,
		"DialInterval": c.DialInterval, "RetryBackoff": c.RetryBackoff,
		"ExpireInterval": c.ExpireInterval, "BanDuration": c.BanDuration,
		"WriteTimeout": c.WriteTimeout, "AckRenewPeerInterval": c.AckRenewPeerInterval,
	} {
		if d < time.Millisecond {
			return fmt.Errorf("%w: %s must be at least 1ms", ErrConfig, name)
		}
	}
	if c.InvBurst == 0 {
		c.InvBurst = 200000
	}
	if c.InvRate == 0 {
		c.InvRate = 100
	}
	if c.InvBurst < 0 || c.InvRate < 0 {
		return fmt.Errorf("%w: InvBurst and InvRate must not be negative", ErrConfig)
	}
	if c.MaxFetching == 0 {
		c.MaxFetching = defaultMaxFetching
	}
	if c.MaxFetchingPerPeer == 0 {
		c.MaxFetchingPerPeer = max(1, c.MaxFetching/defaultFetchShare)
	}
	if c.MaxFetching < 0 || c.MaxFetchingPerPeer < 0 {
		return fmt.Errorf("%w: MaxFetching and MaxFetchingPerPeer must not be negative", ErrConfig)
	}
	c.MaxFetchingPerPeer = min(c.MaxFetchingPerPeer, c.MaxFetching)
	if len(c.UserAgent) > 5000 {
		return fmt.Errorf("%w: user agent longer than 5000 bytes", ErrConfig)
	}
	for _, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("%w: peer %q: %v", ErrConfig, p, err)
		}
	}
	if c.SOCKS5 != "" {
		if _, _, err := net.SplitHostPort(c.SOCKS5); err != nil {
			return fmt.Errorf("%w: SOCKS5 %q: %v", ErrConfig, c.SOCKS5, err)
		}
		if len(c.SOCKS5User) > 255 || len(c.SOCKS5Password) > 255 {
			return fmt.Errorf("%w: SOCKS5 credentials longer than 255 bytes", ErrConfig)
		}
	}
	return nil
}
