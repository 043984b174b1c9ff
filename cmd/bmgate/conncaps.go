package main

// Connection caps. Every SMTP and IMAP connection holds a file descriptor;
// when a flood of idle connections takes them all, nothing can be accepted
// any more: not peers, not the admin listener, not the database's next
// connection. So each mail listener has a cap, and unless configured the
// caps are sized from the process's open-file limit after a reserve for
// everything else.

// Parts of the reserve.
const (
	fdBase       = 64  // standard streams, listeners, the SQLite files, the TLS certificate, logs
	fdDatabase   = 64  // PostgreSQL pool (32), LISTEN connection, SQLite readers, with room
	fdRefusals   = 128 // connections accepted only to be refused (64 at a time per server)
	fdP2PDialing = 32  // outbound peer dials in flight

	maxAutoSMTP = 5000  // an SMTP session is short; beyond this a firewall is the tool
	maxAutoIMAP = 10000 // IMAP sessions last (IDLE), and clients open several
	minAutoCap  = 16
	// defaultCap is used when the limit cannot be read.
	defaultCap = 1000
)

// connCaps are the chosen caps of each listener kind.
type connCaps struct {
	SMTP, IMAP, Local int
	Limit             uint64 // the open-file limit they were sized from (0: unknown)
	Reserve           uint64 // what was set aside for the rest
}

// connectionCaps returns the caps for cfg with the open-file limit nofile:
// the configured values, or for those left at 0, shares of what the limit
// leaves after the reserve (an IMAP listener gets two shares, an SMTP one
// one), so that the caps together stay below the limit.
func connectionCaps(cfg Config, nofile uint64) connCaps {
	c := connCaps{SMTP: cfg.SMTPMaxConnections, IMAP: cfg.IMAPMaxConnections, Limit: nofile}
	if !ListenerOff(cfg.LocalSubmit) {
		c.Local = cfg.LocalSubmitMaxConnections
	}
	if c.SMTP > 0 && c.IMAP > 0 {
		return c
	}
	c.Reserve = fdBase + fdDatabase + fdRefusals + fdP2PDialing + uint64(max(cfg.MaxInbound, 0)+max(cfg.MaxOutbound, 0))
	shares := 0
	for _, l := range []struct {
		addr   string
		weight int
	}{{cfg.SMTP, 1}, {cfg.SMTPS, 1}, {cfg.IMAP, 2}, {cfg.IMAPS, 2}} {
		if !ListenerOff(l.addr) {
			shares += l.weight
		}
	}
	share := defaultCap
	if nofile > 0 && shares > 0 {
		budget := int64(nofile) - int64(c.Reserve) - int64(c.Local)
		// Configured caps come out of the budget first.
		for _, l := range []struct {
			addr  string
			n     int
			share int
		}{{cfg.SMTP, cfg.SMTPMaxConnections, 1}, {cfg.SMTPS, cfg.SMTPMaxConnections, 1}, {cfg.IMAP, cfg.IMAPMaxConnections, 2}, {cfg.IMAPS, cfg.IMAPMaxConnections, 2}} {
			if !ListenerOff(l.addr) && l.n > 0 {
				budget -= int64(l.n)
				shares -= l.share
			}
		}
		if shares > 0 {
			share = int(max(budget/int64(shares), minAutoCap))
		}
	}
	if c.SMTP <= 0 {
		c.SMTP = min(share, maxAutoSMTP)
	}
	if c.IMAP <= 0 {
		c.IMAP = min(2*share, maxAutoIMAP)
	}
	return c
}
