// Package pyapi serves PyBitmessage 0.6.3's XML-RPC API over bmgate's
// store and gateway, for the scripts and programs written against
// PyBitmessage: the same method names and aliases, argument order, base64
// fields, JSON-in-a-string results and "API Error 00NN: …" strings.
//
// Every request is authenticated with HTTP basic auth as a bmgate user
// (user name or own address and password, through the login guard SMTP
// and IMAP use), and sees only that user's identities and mail: the inbox
// is the mail that arrived over Bitmessage in INBOX, Chans/* and
// Subscriptions/*, the sent list is the user's outbox rows, the address
// book is the user's aliases. README.md, "PyBitmessage API", lists the
// differences from PyBitmessage.
package pyapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
)

// MaxBody bounds a request body (bytes).
const MaxBody = 4 << 20

// AuthFailed is PyBitmessage's answer, as the call's result, to a request
// without valid credentials.
const AuthFailed = "RPC Username or password incorrect or HTTP header lacks authentication at all."

// Submitter is the part of the gateway sending needs: the checks and the
// queueing SMTP uses.
type Submitter interface {
	CheckSender(ctx context.Context, u mailmap.User, from string) (string, error)
	CheckRecipient(ctx context.Context, u mailmap.User, rcpt string) (gateway.Recipient, error)
	Submit(ctx context.Context, s gateway.Submission) error
}

// ClientStatus is what clientStatus reports about the node.
type ClientStatus struct {
	NetworkConnections  int
	IncomingConnections bool // some peer connected to us
	MessagesProcessed   uint64
	BroadcastsProcessed uint64
	PubkeysProcessed    uint64
}

// Config is what a Server needs.
type Config struct {
	Store   mailmap.Store
	Gateway Submitter
	Guard   *loginguard.Guard // nil: passwords are checked without it (tests)
	Network *params.Network   // the proof-of-work defaults of new addresses
	Domain  string            // the mail domain of Bitmessage addresses
	Version string            // softwareVersion in clientStatus
	// Status returns the node's figures for clientStatus (nil: none).
	Status func() ClientStatus
	Logger *slog.Logger
	Now    func() time.Time
	// CallTimeout bounds one call's work (default 60 s).
	CallTimeout time.Duration
}

// Server is the XML-RPC API as an http.Handler.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New returns the API server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Gateway == nil || cfg.Network == nil || cfg.Domain == "" {
		return nil, errors.New("pyapi: store, gateway, network and domain are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 60 * time.Second
	}
	return &Server{cfg: cfg, log: cfg.Logger}, nil
}

// Serve serves the API on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeHTTP answers one XML-RPC call, as Python's SimpleXMLRPCServer
// does: POST to / or /RPC2; a body that is not a call gets a fault; the
// method's answer (an error too) is the call's string result.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" && r.URL.Path != "/RPC2" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "Unsupported method", http.StatusNotImplemented)
		return
	}
	body := http.MaxBytesReader(w, r.Body, MaxBody)
	call, err := DecodeCall(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) || strings.Contains(err.Error(), "request body too large") {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		s.write(w, EncodeFault(1, "<class 'xml.parsers.expat.ExpatError'>:"+strings.TrimPrefix(err.Error(), ErrParse.Error()+": ")))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CallTimeout)
	defer cancel()
	u, ok := s.authenticate(ctx, r)
	if !ok {
		s.write(w, EncodeResponse(AuthFailed))
		return
	}
	s.write(w, EncodeResponse(s.dispatch(ctx, u, call)))
}

func (s *Server) write(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// authenticate checks the basic-auth credentials through the login guard.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (mailmap.User, bool) {
	name, password, ok := r.BasicAuth()
	if !ok || name == "" || password == "" {
		return mailmap.User{}, false
	}
	verify := func(ctx context.Context) (mailmap.User, error) {
		return s.cfg.Store.Authenticate(ctx, name, password)
	}
	var u mailmap.User
	var err error
	if s.cfg.Guard != nil {
		ip, _, serr := net.SplitHostPort(r.RemoteAddr)
		if serr != nil {
			ip = r.RemoteAddr
		}
		u, err = s.cfg.Guard.Login(ctx, "api", ip, name, verify)
	} else {
		u, err = verify(ctx)
	}
	if err != nil {
		if !errors.Is(err, mailmap.ErrAuthFailed) && !errors.Is(err, mailmap.ErrDisabled) && !errors.Is(err, loginguard.ErrLocked) {
			s.log.Warn("api authentication unavailable", "err", err)
		}
		return mailmap.User{}, false
	}
	return u, true
}

// apiError is PyBitmessage's APIError: its text is the call's result.
type apiError struct {
	n    int
	text string
}

func (e *apiError) Error() string { return fmt.Sprintf("API Error %04d: %s", e.n, e.text) }

func apiErr(n int, format string, args ...any) error {
	return &apiError{n: n, text: fmt.Sprintf(format, args...)}
}

// unexpected is error 21, PyBitmessage's answer to any other failure.
func unexpected(err error) error {
	return &apiError{n: 21, text: "Unexpected API Failure - " + err.Error()}
}

type handler func(s *Server, ctx context.Context, u mailmap.User, p []any) (any, error)

var handlers map[string]handler

func init() {
	handlers = map[string]handler{
		"helloWorld":                   (*Server).helloWorld,
		"add":                          (*Server).add,
		"listAddresses":                (*Server).listAddresses,
		"listAddresses2":               (*Server).listAddresses2,
		"listAddressBookEntries":       (*Server).listAddressBook,
		"listAddressbook":              (*Server).listAddressBook,
		"addAddressBookEntry":          (*Server).addAddressBook,
		"addAddressbook":               (*Server).addAddressBook,
		"deleteAddressBookEntry":       (*Server).deleteAddressBook,
		"deleteAddressbook":            (*Server).deleteAddressBook,
		"createRandomAddress":          (*Server).createRandomAddress,
		"createDeterministicAddresses": (*Server).createDeterministicAddresses,
		"getDeterministicAddress":      (*Server).getDeterministicAddress,
		"createChan":                   (*Server).createChan,
		"joinChan":                     (*Server).joinChan,
		"leaveChan":                    (*Server).leaveChan,
		"deleteAddress":                (*Server).deleteAddress,
		"getAllInboxMessages":          (*Server).getAllInboxMessages,
		"getAllInboxMessageIds":        (*Server).getAllInboxMessageIds,
		"getAllInboxMessageIDs":        (*Server).getAllInboxMessageIds,
		"getInboxMessageById":          (*Server).getInboxMessageById,
		"getInboxMessageByID":          (*Server).getInboxMessageById,
		"getInboxMessagesByReceiver":   (*Server).getInboxMessagesByReceiver,
		"getInboxMessagesByAddress":    (*Server).getInboxMessagesByReceiver,
		"getAllSentMessages":           (*Server).getAllSentMessages,
		"getAllSentMessageIds":         (*Server).getAllSentMessageIds,
		"getAllSentMessageIDs":         (*Server).getAllSentMessageIds,
		"getSentMessageById":           (*Server).getSentMessageById,
		"getSentMessageByID":           (*Server).getSentMessageById,
		"getSentMessagesByAddress":     (*Server).getSentMessagesBySender,
		"getSentMessagesBySender":      (*Server).getSentMessagesBySender,
		"getSentMessageByAckData":      (*Server).getSentMessageByAckData,
		"trashMessage":                 (*Server).trashMessage,
		"trashInboxMessage":            (*Server).trashInboxMessage,
		"trashSentMessage":             (*Server).trashSentMessage,
		"trashSentMessageByAckData":    (*Server).trashSentMessageByAckData,
		"sendMessage":                  (*Server).sendMessage,
		"sendBroadcast":                (*Server).sendBroadcast,
		"getStatus":                    (*Server).getStatus,
		"listSubscriptions":            (*Server).listSubscriptions,
		"addSubscription":              (*Server).addSubscription,
		"deleteSubscription":           (*Server).deleteSubscription,
		"clientStatus":                 (*Server).clientStatus,
		"decodeAddress":                (*Server).decodeAddress,
	}
}

// Methods returns the method names the API answers (aliases included).
func Methods() []string {
	m := make(map[string]any, len(handlers))
	for k := range handlers {
		m[k] = nil
	}
	return sortedKeys(m)
}

// dispatch runs one call and returns its result: the method's value, or
// the text of its error.
func (s *Server) dispatch(ctx context.Context, u mailmap.User, c Call) (result any) {
	h, ok := handlers[c.Method]
	if !ok {
		return (&apiError{n: 20, text: "Invalid method: " + c.Method}).Error()
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("api method panicked", "method", c.Method, "panic", r)
			result = unexpected(fmt.Errorf("internal error")).Error()
		}
	}()
	v, err := h(s, ctx, u, c.Params)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return ae.Error()
		}
		s.log.Warn("api method failed", "method", c.Method, "user", u.Name, "err", err)
		return unexpected(err).Error()
	}
	return v
}
