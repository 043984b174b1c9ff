package mailmap

import (
	"strings"
	"testing"
)

func TestRewriteChanTo(t *testing.T) {
	const addr = "BM-2cW67GEKkHGonXKZLCzouLLxnLym3azS8r"
	const want = "To: \"chan-2cW67GEKkH\" <" + addr + "@bmaddr.lan>"
	cases := []struct {
		name, raw string
		ok        bool
	}{
		{"plain", "From: <BM-x@bmaddr.lan>\r\nTo: \"[chan] secret\" <" + addr + "@bmaddr.lan>\r\nX-Bitmessage-Kind: chan\r\n\r\nbody\r\n", true},
		{"folded, encoded", "To: =?utf-8?q?=5Bchan=5D_Gr=C3=BC=C3=9Fe?=\r\n <" + addr + "@bmaddr.lan>\r\nx-bitmessage-kind:  chan\r\n\r\nTo: body\r\n", true},
		{"LF", "To: \"[chan] secret\" <" + addr + "@bmaddr.lan>\nX-Bitmessage-Kind: chan\n\nbody\n", true},
		{"unparsable name", "To: [chan] a\"b <" + addr + "@bmaddr.lan>\r\nX-Bitmessage-Kind: chan\r\n\r\n", true},
		{"not a chan post", "To: \"[chan] secret\" <" + addr + "@bmaddr.lan>\r\nX-Bitmessage-Kind: msg\r\n\r\n", false},
		{"no kind", "To: \"[chan] secret\" <" + addr + "@bmaddr.lan>\r\n\r\n", false},
		{"another address", "To: \"[chan] secret\" <BM-other@bmaddr.lan>\r\nX-Bitmessage-Kind: chan\r\n\r\n", false},
		{"two To fields", "To: <" + addr + "@bmaddr.lan>\r\nTo: <" + addr + "@bmaddr.lan>\r\nX-Bitmessage-Kind: chan\r\n\r\n", false},
		{"no header end", "To: \"[chan] secret\" <" + addr + "@bmaddr.lan>\r\nX-Bitmessage-Kind: chan\r\n", false},
		{"already renamed", want + "\r\nX-Bitmessage-Kind: chan\r\n\r\n", false},
	}
	for _, c := range cases {
		out, ok := rewriteChanTo([]byte(c.raw), addr, "chan-2cW67GEKkH")
		if ok != c.ok {
			t.Errorf("%s: rewritten %v, want %v:\n%s", c.name, ok, c.ok, out)
			continue
		}
		if !ok {
			if string(out) != c.raw {
				t.Errorf("%s: changed though not rewritten", c.name)
			}
			continue
		}
		head, body, _ := strings.Cut(string(out), "\n\n")
		if strings.Contains(c.raw, "\r\n") {
			head, body, _ = strings.Cut(string(out), "\r\n\r\n")
		}
		if !strings.Contains(head, want) || strings.Contains(head, "[chan]") || strings.Contains(head, "Gr") ||
			!strings.HasSuffix(c.raw, body) {
			t.Errorf("%s: got\n%s", c.name, out)
		}
		if again, ok := rewriteChanTo(out, addr, "chan-2cW67GEKkH"); ok || string(again) != string(out) {
			t.Errorf("%s: second rewrite changed it", c.name)
		}
	}
}
