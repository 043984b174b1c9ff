package main

import (
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAutoconfig: Thunderbird's and Outlook's autoconfiguration describe
// the listeners that are on (implicit TLS preferred, else STARTTLS), at
// the configured host name, with the mail address as the login name.
func TestAutoconfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Domain, cfg.Hostname = "bm.example", "mail.bm.example"
	cfg.IMAP, cfg.IMAPS, cfg.SMTP, cfg.SMTPS = "0.0.0.0:143", "0.0.0.0:993", "0.0.0.0:587", Off
	imap, smtp, err := endpoints(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := &autoconfigServer{Domain: cfg.Domain, Hostname: cfg.Hostname, IMAP: imap, SMTP: smtp, Log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()

	for _, path := range []string{"/mail/config-v1.1.xml?emailaddress=BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK%40bm.example",
		"/.well-known/autoconfig/mail/config-v1.1.xml"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/xml") {
			t.Fatalf("%s: %s %s\n%s", path, resp.Status, resp.Header.Get("Content-Type"), body)
		}
		var c tbClientConfig
		if err := xml.Unmarshal(body, &c); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
		in, out := c.Provider.Incoming, c.Provider.Outgoing
		if c.Version != "1.1" || c.Provider.Domain != "bm.example" || len(in) != 1 || len(out) != 1 {
			t.Fatalf("%s: %+v", path, c)
		}
		if in[0] != (tbServer{Type: "imap", Hostname: "mail.bm.example", Port: "993", SocketType: "SSL",
			Authentication: "password-cleartext", Username: "%EMAILADDRESS%"}) {
			t.Errorf("incoming server %+v", in[0])
		}
		if out[0] != (tbServer{Type: "smtp", Hostname: "mail.bm.example", Port: "587", SocketType: "STARTTLS",
			Authentication: "password-cleartext", Username: "%EMAILADDRESS%"}) {
			t.Errorf("outgoing server %+v", out[0])
		}
	}
	if resp, err := http.Get(srv.URL + "/mail/config-v1.1.xml?emailaddress=someone%40elsewhere.example"); err != nil || resp.StatusCode != 404 {
		t.Errorf("another domain: %v %v, want 404", resp.Status, err)
	}

	const email = "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK@bm.example"
	req := `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>` + email + `</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`
	resp, err := http.Post(srv.URL+"/autodiscover/autodiscover.xml", "text/xml", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("autodiscover: %s\n%s", resp.Status, body)
	}
	var ad adResponse
	if err := xml.Unmarshal(body, &ad); err != nil {
		t.Fatalf("autodiscover: %v\n%s", err, body)
	}
	if ad.Response.Account.Action != "settings" || len(ad.Response.Account.Protocols) != 2 ||
		!strings.Contains(string(body), `xmlns="`+adOutlookNS+`"`) {
		t.Fatalf("autodiscover response:\n%s", body)
	}
	for i, want := range []adProtocol{
		{Type: "IMAP", Server: "mail.bm.example", Port: "993", DomainRequired: "off", LoginName: email, SPA: "off", SSL: "on", Encryption: "SSL", AuthRequired: "on"},
		{Type: "SMTP", Server: "mail.bm.example", Port: "587", DomainRequired: "off", LoginName: email, SPA: "off", SSL: "on", Encryption: "TLS", AuthRequired: "on"},
	} {
		if got := ad.Response.Account.Protocols[i]; got != want {
			t.Errorf("protocol %d = %+v, want %+v", i, got, want)
		}
	}
	for _, bad := range []string{"<Autodiscover><Request><EMailAddress>x@elsewhere.example</EMailAddress></Request></Autodiscover>", "<<<", strings.Repeat("x", 20<<10)} {
		resp, err := http.Post(srv.URL+"/autodiscover/autodiscover.xml", "text/xml", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("request %.30q: %s, want an error", bad, resp.Status)
		}
	}
}

// TestAutoconfigNeedsListeners: autoconfig cannot describe listeners that
// are off or on unix sockets; the configuration is refused.
func TestAutoconfigNeedsListeners(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Autoconfig = "127.0.0.1:0"
	cfg.IMAP, cfg.IMAPS = Off, Off
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "autoconfig") {
		t.Fatalf("Validate = %v, want an autoconfig error", err)
	}
}
