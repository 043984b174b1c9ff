package main

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Mail client autoconfiguration: Thunderbird's autoconfig (config-v1.1.xml)
// and Outlook's autodiscover (POX), so that a client given only
// BM-…@domain finds the IMAP and SMTP servers, their ports and their
// security, and logs in with the address itself (mailmap.Authenticate
// takes a user's own address as a login name).

// autoconfigServer describes the mail listeners for clients.
type autoconfigServer struct {
	Domain   string // the mail domain (BM-…@Domain)
	Hostname string // the host clients connect to
	IMAP     clientEndpoint
	SMTP     clientEndpoint
	Log      *slog.Logger
}

// clientEndpoint is one listener as a client sees it.
type clientEndpoint struct {
	Port     string
	Implicit bool // TLS from the first byte (IMAPS, SMTPS); else STARTTLS
}

// endpoints picks what to offer: the implicit-TLS listener when one is on,
// else the STARTTLS one. ok is false when neither listens on a TCP port.
func endpoints(cfg Config) (imap, smtp clientEndpoint, err error) {
	pick := func(name, plain, tls string) (clientEndpoint, error) {
		for _, c := range []struct {
			addr     string
			implicit bool
		}{{tls, true}, {plain, false}} {
			if ListenerOff(c.addr) || strings.HasPrefix(c.addr, "unix:") {
				continue
			}
			_, port, err := net.SplitHostPort(c.addr)
			if err != nil {
				return clientEndpoint{}, fmt.Errorf("%s listener %q: %w", name, c.addr, err)
			}
			return clientEndpoint{Port: port, Implicit: c.implicit}, nil
		}
		return clientEndpoint{}, fmt.Errorf("autoconfig needs an %s listener on a TCP port", name)
	}
	if imap, err = pick("IMAP", cfg.IMAP, cfg.IMAPS); err != nil {
		return
	}
	smtp, err = pick("SMTP", cfg.SMTP, cfg.SMTPS)
	return
}

// maxAutodiscoverRequest bounds an Outlook request body (a few hundred
// bytes in practice).
const maxAutodiscoverRequest = 16 << 10

func (a *autoconfigServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mail/config-v1.1.xml", a.thunderbird)
	mux.HandleFunc("GET /.well-known/autoconfig/mail/config-v1.1.xml", a.thunderbird)
	for _, p := range []string{"/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"} {
		mux.HandleFunc("POST "+p, a.outlook)
	}
	return mux
}

// serve answers on ln until it is closed.
func (a *autoconfigServer) serve(ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       20 * time.Second,
		WriteTimeout:      20 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn),
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// forDomain reports whether a client's address (may be empty: clients
// that do not send it) is one of ours.
func (a *autoconfigServer) forDomain(email string) bool {
	if email == "" {
		return true
	}
	_, domain, ok := strings.Cut(email, "@")
	return ok && strings.EqualFold(domain, a.Domain)
}

// Thunderbird's format: https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat
type tbClientConfig struct {
	XMLName  xml.Name        `xml:"clientConfig"`
	Version  string          `xml:"version,attr"`
	Provider tbEmailProvider `xml:"emailProvider"`
}

type tbEmailProvider struct {
	ID        string     `xml:"id,attr"`
	Domain    string     `xml:"domain"`
	Display   string     `xml:"displayName"`
	Short     string     `xml:"displayShortName"`
	Incoming  []tbServer `xml:"incomingServer"`
	Outgoing  []tbServer `xml:"outgoingServer"`
	Documents []tbDoc    `xml:"documentation,omitempty"`
}

type tbServer struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           string `xml:"port"`
	SocketType     string `xml:"socketType"`
	Authentication string `xml:"authentication"`
	Username       string `xml:"username"`
}

type tbDoc struct {
	URL   string `xml:"url,attr"`
	Descr string `xml:"descr"`
}

func socketType(e clientEndpoint) string {
	if e.Implicit {
		return "SSL"
	}
	return "STARTTLS"
}

func (a *autoconfigServer) thunderbird(w http.ResponseWriter, r *http.Request) {
	if !a.forDomain(r.URL.Query().Get("emailaddress")) {
		http.Error(w, "not a mail address of this server", http.StatusNotFound)
		return
	}
	c := tbClientConfig{Version: "1.1", Provider: tbEmailProvider{
		ID:      a.Domain,
		Domain:  a.Domain,
		Display: "Bitmessage via bmgate (" + a.Domain + ")",
		Short:   "bmgate",
		Incoming: []tbServer{{Type: "imap", Hostname: a.Hostname, Port: a.IMAP.Port, SocketType: socketType(a.IMAP),
			Authentication: "password-cleartext", Username: "%EMAILADDRESS%"}},
		Outgoing: []tbServer{{Type: "smtp", Hostname: a.Hostname, Port: a.SMTP.Port, SocketType: socketType(a.SMTP),
			Authentication: "password-cleartext", Username: "%EMAILADDRESS%"}},
	}}
	a.writeXML(w, "application/xml", c)
}

// Outlook's POX autodiscover (MS-OXDSCLI).
const (
	adResponseNS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	adOutlookNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

type adRequest struct {
	Request struct {
		EMailAddress string `xml:"EMailAddress"`
	} `xml:"Request"`
}

type adResponse struct {
	XMLName  xml.Name `xml:"Autodiscover"`
	NS       string   `xml:"xmlns,attr"`
	Response struct {
		NS      string `xml:"xmlns,attr"`
		Account struct {
			AccountType string       `xml:"AccountType"`
			Action      string       `xml:"Action"`
			Protocols   []adProtocol `xml:"Protocol"`
		} `xml:"Account"`
	} `xml:"Response"`
}

type adProtocol struct {
	Type           string `xml:"Type"`
	Server         string `xml:"Server"`
	Port           string `xml:"Port"`
	DomainRequired string `xml:"DomainRequired"`
	LoginName      string `xml:"LoginName"`
	SPA            string `xml:"SPA"`
	SSL            string `xml:"SSL"`
	Encryption     string `xml:"Encryption"`
	AuthRequired   string `xml:"AuthRequired"`
}

func (a *autoconfigServer) outlook(w http.ResponseWriter, r *http.Request) {
	var req adRequest
	body := http.MaxBytesReader(w, r.Body, maxAutodiscoverRequest)
	if err := xml.NewDecoder(body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, "malformed autodiscover request", http.StatusBadRequest)
		return
	}
	email := strings.TrimSpace(req.Request.EMailAddress)
	if email == "" || !a.forDomain(email) {
		http.Error(w, "not a mail address of this server", http.StatusNotFound)
		return
	}
	proto := func(typ string, e clientEndpoint) adProtocol {
		enc := "TLS" // STARTTLS
		if e.Implicit {
			enc = "SSL"
		}
		return adProtocol{Type: typ, Server: a.Hostname, Port: e.Port, DomainRequired: "off", LoginName: email,
			SPA: "off", SSL: "on", Encryption: enc, AuthRequired: "on"}
	}
	var resp adResponse
	resp.NS, resp.Response.NS = adResponseNS, adOutlookNS
	resp.Response.Account.AccountType, resp.Response.Account.Action = "email", "settings"
	resp.Response.Account.Protocols = []adProtocol{proto("IMAP", a.IMAP), proto("SMTP", a.SMTP)}
	a.writeXML(w, "text/xml", resp)
}

func (a *autoconfigServer) writeXML(w http.ResponseWriter, contentType string, v any) {
	out, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		a.Log.Error("autoconfig", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType+"; charset=utf-8")
	io.WriteString(w, xml.Header)
	w.Write(out)
	io.WriteString(w, "\n")
}
