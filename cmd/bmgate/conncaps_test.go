package main

import "testing"

// TestConnectionCaps: caps left at 0 share what the open-file limit leaves
// after the reserve (IMAP two shares, SMTP one), never all of it; set caps
// are kept and come out of the budget first.
func TestConnectionCaps(t *testing.T) {
	base := DefaultConfig() // smtp and imap on, smtps, imaps and local_submit off
	for _, tc := range []struct {
		name       string
		tweak      func(*Config)
		nofile     uint64
		smtp, imap int
	}{
		{"1024 fds", nil, 1024, 176, 352},
		{"a million fds", nil, 1 << 20, maxAutoSMTP, maxAutoIMAP},
		{"unknown limit", nil, 0, defaultCap, 2 * defaultCap},
		{"tiny limit", nil, 256, minAutoCap, 2 * minAutoCap},
		{"all four listeners", func(c *Config) { c.SMTPS, c.IMAPS = "0.0.0.0:465", "0.0.0.0:993" }, 4096, 600, 1200},
		{"imap set", func(c *Config) { c.IMAPMaxConnections = 300 }, 1024, 228, 300},
		{"both set", func(c *Config) { c.SMTPMaxConnections, c.IMAPMaxConnections = 7, 9 }, 1024, 7, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			if tc.tweak != nil {
				tc.tweak(&cfg)
			}
			c := connectionCaps(cfg, tc.nofile)
			if c.SMTP != tc.smtp || c.IMAP != tc.imap {
				t.Errorf("caps %+v, want smtp %d imap %d", c, tc.smtp, tc.imap)
			}
			listeners := 1 // smtp
			imaps := 1
			if cfg.SMTPS != Off {
				listeners, imaps = 2, 2
			}
			if used := uint64(listeners*c.SMTP + imaps*c.IMAP); tc.nofile > 0 && c.Reserve > 0 && tc.nofile >= 1024 && used+c.Reserve > tc.nofile {
				t.Errorf("caps use %d fds + reserve %d > limit %d", used, c.Reserve, tc.nofile)
			}
		})
	}
}
