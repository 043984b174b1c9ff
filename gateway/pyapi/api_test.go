package pyapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/gateway/pyapi"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

const domain = "bmaddr.lan"

func onBackends(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "api.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, storetest.PostgresDSN(t)) })
}

// rpc is a small XML-RPC client: raw XML out, the parsed answer back.
type rpc struct {
	t          *testing.T
	url        string
	user, pass string
}

// b64 marks a parameter to send as a base64-encoded <string>, as
// PyBitmessage's clients do.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func xmlEscape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func encodeParam(v any) string {
	switch v := v.(type) {
	case string:
		return "<value><string>" + xmlEscape(v) + "</string></value>"
	case int:
		return fmt.Sprintf("<value><int>%d</int></value>", v)
	case bool:
		if v {
			return "<value><boolean>1</boolean></value>"
		}
		return "<value><boolean>0</boolean></value>"
	case float64:
		return fmt.Sprintf("<value><double>%v</double></value>", v)
	}
	panic(fmt.Sprintf("encodeParam %T", v))
}

type xmlValue struct {
	String  *string `xml:"string"`
	Int     *int64  `xml:"int"`
	Members []struct {
		Name  string   `xml:"name"`
		Value xmlValue `xml:"value"`
	} `xml:"struct>member"`
	Text string `xml:",chardata"`
}

type xmlResponse struct {
	XMLName xml.Name  `xml:"methodResponse"`
	Value   *xmlValue `xml:"params>param>value"`
	Fault   *xmlValue `xml:"fault>value"`
}

// post sends a raw body and returns the HTTP response body.
func (c *rpc) post(body string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest("POST", c.url, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// call calls a method and returns its result as text (an int as digits).
func (c *rpc) call(method string, args ...any) string {
	c.t.Helper()
	var b strings.Builder
	b.WriteString("<?xml version='1.0'?>\n<methodCall>\n<methodName>" + method + "</methodName>\n<params>\n")
	for _, a := range args {
		b.WriteString("<param>\n" + encodeParam(a) + "\n</param>\n")
	}
	b.WriteString("</params>\n</methodCall>\n")
	code, body := c.post(b.String())
	if code != 200 {
		c.t.Fatalf("%s: HTTP %d %s", method, code, body)
	}
	var r xmlResponse
	if err := xml.Unmarshal(body, &r); err != nil {
		c.t.Fatalf("%s: response %v\n%s", method, err, body)
	}
	if r.Fault != nil || r.Value == nil {
		c.t.Fatalf("%s: fault or no value\n%s", method, body)
	}
	switch {
	case r.Value.String != nil:
		return *r.Value.String
	case r.Value.Int != nil:
		return fmt.Sprint(*r.Value.Int)
	}
	return r.Value.Text
}

// jsonOf parses a JSON result.
func (c *rpc) jsonOf(method string, args ...any) map[string]any {
	c.t.Helper()
	s := c.call(method, args...)
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		c.t.Fatalf("%s: result is not JSON: %v\n%s", method, err, s)
	}
	return m
}

func list(m map[string]any, key string) []map[string]any {
	var out []map[string]any
	for _, v := range m[key].([]any) {
		out = append(out, v.(map[string]any))
	}
	return out
}

func unb64(t *testing.T, v any) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(v.(string))
	if err != nil {
		t.Fatalf("base64 %q: %v", v, err)
	}
	return string(b)
}

type site struct {
	st  mailmap.Store
	gw  *gateway.Gateway
	srv *httptest.Server
}

func newSite(t *testing.T, dsn string) *site {
	t.Helper()
	ctx := context.Background()
	key := make([]byte, 32)
	rand.Read(key)
	st, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gw, err := gateway.New(gateway.Config{Store: st, Network: params.Mainnet, Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	api, err := pyapi.New(pyapi.Config{Store: st, Gateway: gw, Network: params.Mainnet, Domain: domain, Version: "test",
		Status: func() pyapi.ClientStatus { return pyapi.ClientStatus{NetworkConnections: 3, MessagesProcessed: 7} }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	for _, name := range []string{"alice", "bob"} {
		if _, err := st.CreateUser(ctx, name, name+"-pw"); err != nil {
			t.Fatal(err)
		}
	}
	return &site{st: st, gw: gw, srv: srv}
}

func (s *site) client(t *testing.T, user, pass string) *rpc {
	return &rpc{t: t, url: s.srv.URL, user: user, pass: pass}
}

func TestAPI(t *testing.T) {
	onBackends(t, testAPI)
}

func testAPI(t *testing.T, dsn string) {
	ctx := context.Background()
	s := newSite(t, dsn)
	alice := s.client(t, "alice", "alice-pw")
	bob := s.client(t, "bob", "bob-pw")
	aliceU, _ := s.st.UserByName(ctx, "alice")
	bobU, _ := s.st.UserByName(ctx, "bob")

	// Authentication.
	for _, c := range []*rpc{s.client(t, "alice", "wrong"), s.client(t, "", ""), s.client(t, "nobody", "x")} {
		if got := c.call("helloWorld", "a", "b"); got != pyapi.AuthFailed {
			t.Errorf("bad credentials: %q", got)
		}
	}
	// Trivia, unknown methods, parameter counts.
	if got := alice.call("helloWorld", "a", "b"); got != "a-b" {
		t.Errorf("helloWorld: %q", got)
	}
	if got := alice.call("add", 2, 3); got != "5" {
		t.Errorf("add: %q", got)
	}
	if got := alice.call("helloWorld", "a"); got != "API Error 0021: Unexpected API Failure - need more than 1 value to unpack" {
		t.Errorf("helloWorld with one argument: %q", got)
	}
	if got := alice.call("noSuchMethod"); got != "API Error 0020: Invalid method: noSuchMethod" {
		t.Errorf("unknown method: %q", got)
	}
	for method, want := range map[string]string{
		"sendMessage":                  "API Error 0000: I need parameters!",
		"getInboxMessageById":          "API Error 0000: I need parameters!",
		"createRandomAddress":          "API Error 0000: I need parameters!",
		"getDeterministicAddress":      "API Error 0000: I need exactly 3 parameters.",
		"joinChan":                     "API Error 0000: I need two parameters.",
		"getStatus":                    "API Error 0000: I need one parameter!",
		"decodeAddress":                "API Error 0000: I need 1 parameter!",
		"deleteSubscription":           "API Error 0000: I need 1 parameter!",
		"addAddressBookEntry":          "API Error 0000: I need label and address",
		"createDeterministicAddresses": "API Error 0000: I need parameters!",
	} {
		if got := alice.call(method); got != want {
			t.Errorf("%s without parameters: %q, want %q", method, got, want)
		}
	}
	// A malformed body is a fault.
	if code, body := alice.post("<methodCall><methodName>x</methodName><params><param><value><int>nope</int>"); code != 200 || !bytes.Contains(body, []byte("<fault>")) || !bytes.Contains(body, []byte("faultCode")) {
		t.Errorf("malformed call: %d %s", code, body)
	}

	// Addresses.
	addrA := alice.call("createRandomAddress", b64("Alice main"))
	if !strings.HasPrefix(addrA, "BM-") {
		t.Fatalf("createRandomAddress: %q", addrA)
	}
	hard := alice.call("createRandomAddress", b64("hard"), false, 2.5, 3)
	id, err := s.st.IdentityByAddress(ctx, hard)
	if err != nil || id.NonceTrialsPerByte != 2500 || id.ExtraBytes != 3000 || id.UserID != aliceU.ID {
		t.Errorf("difficulty: %+v %v", id, err)
	}
	if got := alice.call("createRandomAddress", b64("x"), true); !strings.HasPrefix(got, "API Error 0021: Unexpected API Failure - eighteenByteRipe") {
		t.Errorf("eighteenByteRipe: %q", got)
	}
	if got := alice.call("createRandomAddress", base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe})); got != "API Error 0017: Label is not valid UTF-8 data." {
		t.Errorf("non-UTF-8 label: %q", got)
	}
	if got := alice.call("createRandomAddress", "abc"); got != "API Error 0022: Decode error - Incorrect padding. Had trouble while decoding string: 'abc'" {
		t.Errorf("bad base64: %q", got)
	}
	addrB := bob.call("createRandomAddress", b64("Bob"))
	la := alice.jsonOf("listAddresses")
	if got := list(la, "addresses"); len(got) != 2 || got[0]["label"] != "Alice main" || got[0]["enabled"] != true || got[0]["chan"] != false || got[0]["stream"] != 1.0 {
		t.Errorf("listAddresses: %+v", got)
	}
	if got := list(alice.jsonOf("listAddresses2"), "addresses"); unb64(t, got[0]["label"]) != "Alice main" {
		t.Errorf("listAddresses2: %+v", got)
	}
	if got := list(bob.jsonOf("listAddresses"), "addresses"); len(got) != 1 || got[0]["address"] != addrB {
		t.Errorf("bob sees: %+v", got)
	}
	// Deterministic addresses.
	det := alice.jsonOf("createDeterministicAddresses", b64("correct horse"), 2)
	dets := det["addresses"].([]any)
	if len(dets) != 2 {
		t.Fatalf("createDeterministicAddresses: %v", det)
	}
	want, _ := identity.Deterministic([]byte("correct horse"), 4, 1, 2)
	if dets[0] != want[0].Address.String() || dets[1] != want[1].Address.String() {
		t.Errorf("deterministic: %v, want %v %v", dets, want[0].Address, want[1].Address)
	}
	if got := alice.call("createDeterministicAddresses", b64("correct horse"), 2); got != `{"addresses":[]}` {
		t.Errorf("again: %q", got)
	}
	if got := bob.call("createDeterministicAddresses", b64("correct horse")); !strings.HasPrefix(got, "API Error 0016: ") {
		t.Errorf("another user's address: %q", got)
	}
	if got := alice.call("getDeterministicAddress", b64("correct horse"), 4, 1); got != want[0].Address.String() {
		t.Errorf("getDeterministicAddress: %q", got)
	}
	if got := alice.call("getDeterministicAddress", b64("x"), 5, 1); got != "API Error 0002: The address version number currently must be 3 or 4. 5 isn't supported." {
		t.Errorf("version 5: %q", got)
	}
	if got := alice.call("createDeterministicAddresses", b64("x"), 0); got != "API Error 0004: Why would you ask me to generate 0 addresses for you?" {
		t.Errorf("0 addresses: %q", got)
	}
	if got := alice.call("createDeterministicAddresses", b64("x"), 1, 0, 0, "no"); got != "API Error 0023: Bool expected in eighteenByteRipe, saw <type 'str'> instead" {
		t.Errorf("bool expected: %q", got)
	}
	if got := alice.call("createDeterministicAddresses", ""); got != "API Error 0001: The specified passphrase is blank." {
		t.Errorf("blank: %q", got)
	}
	if got := alice.call("deleteAddress", dets[1]); got != "success" {
		t.Errorf("deleteAddress: %q", got)
	}
	if got := bob.call("deleteAddress", dets[0]); got != "API Error 0013: Could not find this address in your keys.dat file." {
		t.Errorf("bob deletes alice's address: %q", got)
	}
	// Bad addresses.
	bad := addrA[:len(addrA)-1] + string("23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"[(strings.IndexByte("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", addrA[len(addrA)-1])+1)%57])
	withSum := func(data []byte) string {
		sum := address.DoubleSHA512(data)
		return "BM-" + address.EncodeBase58(append(data, sum[:4]...))
	}
	ripe := bytes.Repeat([]byte{0x11}, 20)
	v1 := withSum(append([]byte{1, 1}, ripe...))
	v5 := withSum(append([]byte{5, 1}, ripe...))
	stream2 := address.Address{Version: 4, Stream: 2, Ripe: [20]byte(ripe)}.String()
	notCanonical := withSum(append([]byte{4, 1, 0}, ripe[:19]...))
	for addr, want := range map[string]string{
		v1:           "API Error 0011: The address version number currently must be 2, 3 or 4. Others aren't supported. Check the address.",
		v5:           "API Error 0010: Address version number too high (or zero) in address: " + v5,
		stream2:      "API Error 0012: The stream number must be 1. Others aren't supported. Check the address.",
		notCanonical: "API Error 0007: Could not decode address: " + notCanonical + " : encodingproblem",
		bad:          "API Error 0008: Checksum failed for address: " + bad,
		"BM-0OIl":    "API Error 0009: Invalid characters in address: BM-0OIl",
		"BM-":        "API Error 0009: Invalid characters in address: BM-",
		"BM-2cW67":   "API Error 0008: Checksum failed for address: BM-2cW67",
	} {
		if got := alice.call("deleteAddress", addr); got != want {
			t.Errorf("deleteAddress(%q): %q, want %q", addr, got, want)
		}
	}
	if got := alice.jsonOf("decodeAddress", addrA); got["status"] != "success" || got["addressVersion"] != 4.0 || got["streamNumber"] != 1.0 || len(unb64(t, got["ripe"])) != 20 {
		t.Errorf("decodeAddress: %v", got)
	}
	if got := alice.jsonOf("decodeAddress", v1); got["status"] != "success" || got["addressVersion"] != 1.0 || unb64(t, got["ripe"]) != string(ripe) {
		t.Errorf("decodeAddress(v1): %v", got)
	}
	if got := alice.jsonOf("decodeAddress", bad); got["status"] != "checksumfailed" {
		t.Errorf("decodeAddress(bad): %v", got)
	}

	// Chans.
	chanAddr := alice.call("createChan", b64("general"))
	if ch, _ := identity.Chan("general"); chanAddr != ch.Address.String() {
		t.Fatalf("createChan: %q", chanAddr)
	}
	if got := alice.call("createChan", b64("general")); got != "API Error 0024: Chan address is already present." {
		t.Errorf("createChan again: %q", got)
	}
	if got := alice.call("joinChan", b64("general"), chanAddr); got != "API Error 0024: Chan address is already present." {
		t.Errorf("joinChan again: %q", got)
	}
	if got := alice.call("joinChan", b64("other"), chanAddr); got != "API Error 0018: Chan name does not match address." {
		t.Errorf("joinChan mismatch: %q", got)
	}
	if got := bob.call("joinChan", b64("general"), chanAddr); got != "success" {
		t.Errorf("bob joins: %q", got)
	}
	if _, err := s.st.Mailbox(ctx, bobU.ID, gateway.ChanFolder(mailmap.DefaultChanName(chanAddr), chanAddr)); err != nil {
		t.Errorf("chan folder: %v", err)
	}
	chans := 0
	for _, a := range list(alice.jsonOf("listAddresses"), "addresses") {
		if a["chan"] == true {
			chans++
			if a["address"] != chanAddr || a["label"] != mailmap.DefaultChanName(chanAddr) {
				t.Errorf("chan entry: %v", a)
			}
		}
	}
	if chans != 1 {
		t.Errorf("%d chans listed", chans)
	}
	if got := alice.call("leaveChan", addrA); got != "API Error 0025: Specified address is not a chan address. Use deleteAddress API call instead." {
		t.Errorf("leaveChan(normal): %q", got)
	}
	if got := bob.call("leaveChan", chanAddr); got != "success" {
		t.Errorf("leaveChan: %q", got)
	}

	// Address book and subscriptions.
	if got := alice.call("addAddressBookEntry", addrB, b64("Bob Smith")); got != "Added address "+addrB+" to address book" {
		t.Errorf("addAddressBookEntry: %q", got)
	}
	if got := alice.call("addAddressBookEntry", addrB, b64("Bob")); got != "API Error 0016: You already have this address in your address book." {
		t.Errorf("addAddressBookEntry again: %q", got)
	}
	if r, err := s.st.ResolveAlias(ctx, aliceU.ID, "bob.smith@"+domain); err != nil || r != addrB {
		t.Errorf("alias: %q %v", r, err)
	}
	ab := list(alice.jsonOf("listAddressBookEntries"), "addresses")
	if len(ab) != 1 || unb64(t, ab[0]["label"]) != "bob.smith" || ab[0]["address"] != addrB {
		t.Errorf("listAddressBookEntries: %v", ab)
	}
	if got := list(bob.jsonOf("listAddressbook"), "addresses"); len(got) != 0 {
		t.Errorf("bob's address book: %v", got)
	}
	if got := alice.call("deleteAddressBookEntry", addrB); got != "Deleted address book entry for "+addrB+" if it existed" {
		t.Errorf("deleteAddressBookEntry: %q", got)
	}
	if got := list(alice.jsonOf("listAddressBookEntries"), "addresses"); len(got) != 0 {
		t.Errorf("after delete: %v", got)
	}
	if got := alice.call("addSubscription", addrB, b64("Bob's news")); got != "Added subscription." {
		t.Errorf("addSubscription: %q", got)
	}
	if got := alice.call("addSubscription", addrB); got != "API Error 0016: You are already subscribed to that address." {
		t.Errorf("addSubscription again: %q", got)
	}
	subs := list(alice.jsonOf("listSubscriptions"), "subscriptions")
	if len(subs) != 1 || subs[0]["address"] != addrB || unb64(t, subs[0]["label"]) != "Bob's news" || subs[0]["enabled"] != true {
		t.Errorf("listSubscriptions: %v", subs)
	}
	if got := list(bob.jsonOf("listSubscriptions"), "subscriptions"); len(got) != 0 {
		t.Errorf("bob's subscriptions: %v", got)
	}
	if got := alice.call("deleteSubscription", addrB); got != "Deleted subscription if it existed." {
		t.Errorf("deleteSubscription: %q", got)
	}
	if subs, _ := s.st.Subscriptions(ctx, aliceU.ID); len(subs) != 0 {
		t.Errorf("subscription not deleted: %v", subs)
	}

	// Sending.
	ack := alice.call("sendMessage", addrB, addrA, b64("Grüße"), b64("Hello Bob\nsecond line\n"))
	if len(ack) != 76 {
		t.Fatalf("sendMessage: %q", ack)
	}
	rows, err := s.st.UserOutbox(ctx, aliceU.ID)
	if err != nil || len(rows) != 1 {
		t.Fatalf("outbox: %v %v", rows, err)
	}
	row := rows[0]
	if hex.EncodeToString(row.APIRef) != ack || row.Subject != "Grüße" || row.Body != "Hello Bob\nsecond line\n" ||
		row.FromAddress != addrA || row.ToAddress != addrB || row.TTL != 4*24*time.Hour || row.State != mailmap.OutboxQueued {
		t.Errorf("outbox row: %+v", row)
	}
	sentBox, _ := s.st.MailboxBySpecialUse(ctx, aliceU.ID, mailmap.SpecialSent)
	sentMsgs, _ := s.st.Messages(ctx, aliceU.ID, sentBox.ID)
	if len(sentMsgs) != 1 || !slices.Contains(sentMsgs[0].Flags, `\Seen`) || sentMsgs[0].MessageID != row.MessageID {
		t.Errorf("Sent copy: %+v (row Message-ID %q)", sentMsgs, row.MessageID)
	}
	if got := alice.call("getStatus", ack); got != "msgqueued" {
		t.Errorf("getStatus: %q", got)
	}
	if got := alice.call("getStatus", ack[12:]); got != "msgqueued" {
		t.Errorf("getStatus(64 hex): %q", got)
	}
	if got := alice.call("getStatus", "abc"); got != "API Error 0015: The length of ackData should be 32 bytes (encoded in hex thus 64 characters)." {
		t.Errorf("getStatus(short): %q", got)
	}
	if got := bob.call("getStatus", ack); got != "notfound" {
		t.Errorf("bob's getStatus: %q", got)
	}
	sm := list(alice.jsonOf("getSentMessageByAckData", ack), "sentMessage")
	if len(sm) != 1 || sm[0]["ackData"] != ack || unb64(t, sm[0]["subject"]) != "Grüße" || sm[0]["status"] != "msgqueued" || sm[0]["msgid"] != "" || sm[0]["encodingType"] != 2.0 {
		t.Errorf("getSentMessageByAckData: %v", sm)
	}
	if got := list(bob.jsonOf("getSentMessageByAckData", ack), "sentMessage"); len(got) != 0 {
		t.Errorf("bob finds alice's sent message: %v", got)
	}
	// TTL is clamped; encoding 4 refused; too long refused; not one's own sender.
	bc := alice.call("sendBroadcast", addrA, b64("news"), b64("to all"), 2, 60)
	if len(bc) != 76 {
		t.Fatalf("sendBroadcast: %q", bc)
	}
	if got := alice.call("getStatus", bc); got != "broadcastqueued" {
		t.Errorf("broadcast status: %q", got)
	}
	if got := alice.call("sendMessage", addrB, addrA, b64("s"), b64("m"), 4); got != "API Error 0006: The encoding type must be 2 or 3." {
		t.Errorf("encoding 4: %q", got)
	}
	if got := alice.call("sendMessage", addrB, addrA, b64("s"), b64(strings.Repeat("x", 1<<18))); got != "API Error 0027: Message is too long." {
		t.Errorf("too long: %q", got)
	}
	if got := alice.call("sendMessage", addrB, addrA, "a", b64("m")); !strings.HasPrefix(got, "API Error 0022: Decode error - Incorrect padding.") {
		t.Errorf("bad base64 subject: %q", got)
	}
	if got := alice.call("sendMessage", bad, addrA, b64("s"), b64("m")); got != "API Error 0008: Checksum failed for address: "+bad {
		t.Errorf("bad recipient: %q", got)
	}
	if got := bob.call("sendMessage", addrB, addrA, b64("s"), b64("m")); got != "API Error 0013: Could not find your fromAddress in the keys.dat file." {
		t.Errorf("bob sends as alice: %q", got)
	}
	if got := bob.call("sendBroadcast", addrA, b64("s"), b64("m")); got != "API Error 0013: could not find your fromAddress in the keys.dat file." {
		t.Errorf("bob broadcasts as alice: %q", got)
	}
	rows, _ = s.st.UserOutbox(ctx, aliceU.ID)
	for _, r := range rows {
		if r.Kind == mailmap.OutboxBroadcast && r.TTL != time.Hour {
			t.Errorf("broadcast TTL %v, want 1h (clamped)", r.TTL)
		}
	}
	// A post to a chan one has joined.
	post := alice.call("sendMessage", chanAddr, addrA, b64("to the chan"), b64("hi all"))
	if got := alice.call("getStatus", post); got != "msgqueued" {
		t.Errorf("chan post: %q (%s)", got, post)
	}
	rows, _ = s.st.UserOutbox(ctx, aliceU.ID)
	if last := rows[len(rows)-1]; last.Kind != mailmap.OutboxChan || last.ToAddress != chanAddr {
		t.Errorf("chan post row: %+v", last)
	}
	alice.call("trashSentMessageByAckData", post)
	// Mail submitted as over SMTP shows in the sent list.
	raw := "From: " + gateway.BMToMail(addrA, domain) + "\r\nTo: " + gateway.BMToMail(addrB, domain) +
		"\r\nSubject: via smtp\r\nMessage-ID: <smtp1@x>\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\n\r\nbody\r\n"
	from, err := s.gw.CheckSender(ctx, aliceU, gateway.BMToMail(addrA, domain))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.gw.CheckRecipient(ctx, aliceU, gateway.BMToMail(addrB, domain))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.gw.Submit(ctx, gateway.Submission{User: aliceU, From: from, Recipients: []gateway.Recipient{rc}, Raw: []byte(raw)}); err != nil {
		t.Fatal(err)
	}
	all := list(alice.jsonOf("getAllSentMessages"), "sentMessages")
	var subjects []string
	for _, m := range all {
		subjects = append(subjects, unb64(t, m["subject"]))
		if m["toAddress"] == "[Broadcast subscribers]" && m["status"] != "broadcastqueued" {
			t.Errorf("broadcast entry: %v", m)
		}
	}
	slices.Sort(subjects)
	if !slices.Equal(subjects, []string{"Grüße", "news", "via smtp"}) {
		t.Errorf("getAllSentMessages subjects: %q", subjects)
	}
	if got := list(bob.jsonOf("getAllSentMessages"), "sentMessages"); len(got) != 0 {
		t.Errorf("bob sees alice's sent mail: %v", got)
	}
	if got := list(alice.jsonOf("getSentMessagesBySender", addrA), "sentMessages"); len(got) != 3 {
		t.Errorf("getSentMessagesBySender: %d", len(got))
	}
	if got := list(alice.jsonOf("getAllSentMessageIds"), "sentMessageIds"); len(got) != 3 {
		t.Errorf("getAllSentMessageIds: %d", len(got))
	}
	// Published: the msgid is the inventory hash.
	inv := bytes.Repeat([]byte{0xab}, 32)
	if _, err := s.st.TransitionOutbox(ctx, mailmap.OutboxStep{ID: row.ID, From: []mailmap.OutboxState{mailmap.OutboxQueued},
		To: mailmap.OutboxSent, InvHash: inv}); err != nil {
		t.Fatal(err)
	}
	if got := list(alice.jsonOf("getSentMessageById", hex.EncodeToString(inv)), "sentMessage"); len(got) != 1 || got[0]["ackData"] != ack || got[0]["status"] != "msgsentnoackexpected" {
		t.Errorf("getSentMessageById: %v", got)
	}
	if got := bob.call("trashSentMessageByAckData", ack); !strings.HasPrefix(got, "Trashed sent message") {
		t.Errorf("bob trash: %q", got)
	}
	if got := list(alice.jsonOf("getAllSentMessages"), "sentMessages"); len(got) != 3 {
		t.Errorf("bob trashed alice's sent message: %d left", len(got))
	}
	if got := alice.call("trashSentMessage", hex.EncodeToString(inv)); got != "Trashed sent message (assuming message existed)." {
		t.Errorf("trashSentMessage: %q", got)
	}
	if got := list(alice.jsonOf("getAllSentMessages"), "sentMessages"); len(got) != 2 {
		t.Errorf("after trashSentMessage: %d", len(got))
	}
	if got := alice.call("getStatus", ack); got != "msgsentnoackexpected" {
		t.Errorf("status of a trashed row: %q", got)
	}
	if got := alice.call("trashSentMessageByAckData", bc); !strings.HasPrefix(got, "Trashed sent message") {
		t.Errorf("trashSentMessageByAckData: %q", got)
	}
	if got := list(alice.jsonOf("getAllSentMessages"), "sentMessages"); len(got) != 1 || unb64(t, got[0]["subject"]) != "via smtp" {
		t.Errorf("after trashSentMessageByAckData: %v", got)
	}

	// Receiving.
	var hash [32]byte
	rand.Read(hash[:])
	mailIn, err := gateway.BuildIncoming(gateway.Incoming{Domain: domain, From: addrB, To: addrA, Subject: "Grüße zurück",
		Body: "Hi Alice\nä ö ü\n", Date: time.Unix(1_700_000_000, 0), InvHash: hash, Kind: gateway.IncomingMsg})
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := s.st.Mailbox(ctx, aliceU.ID, "INBOX")
	if _, _, err := s.st.DeliverOnce(ctx, aliceU.ID, inbox.ID, hash[:], mailIn, nil, time.Unix(1_800_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	// A mail that did not come over Bitmessage is not in the API's inbox.
	if _, err := s.st.AppendMessage(ctx, aliceU.ID, inbox.ID, []byte("From: x@y\r\nSubject: local\r\n\r\nhi\r\n"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	msgid := hex.EncodeToString(hash[:])
	in := list(alice.jsonOf("getAllInboxMessages"), "inboxMessages")
	if len(in) != 1 {
		t.Fatalf("getAllInboxMessages: %v", in)
	}
	m := in[0]
	if m["msgid"] != msgid || m["toAddress"] != addrA || m["fromAddress"] != addrB || unb64(t, m["subject"]) != "Grüße zurück" ||
		unb64(t, m["message"]) != "Hi Alice\nä ö ü\n" || m["encodingType"] != 2.0 || m["receivedTime"] != "1800000000" || m["read"] != 0.0 {
		t.Errorf("inbox message: %v (message %q)", m, unb64(t, m["message"]))
	}
	if got := list(bob.jsonOf("getAllInboxMessages"), "inboxMessages"); len(got) != 0 {
		t.Errorf("bob sees alice's inbox: %v", got)
	}
	if got := list(bob.jsonOf("getInboxMessageById", msgid), "inboxMessage"); len(got) != 0 {
		t.Errorf("bob reads alice's message: %v", got)
	}
	if got := list(alice.jsonOf("getAllInboxMessageIds"), "inboxMessageIds"); len(got) != 1 || got[0]["msgid"] != msgid {
		t.Errorf("getAllInboxMessageIds: %v", got)
	}
	if got := list(alice.jsonOf("getInboxMessagesByReceiver", addrA), "inboxMessages"); len(got) != 1 || got[0]["read"] != nil {
		t.Errorf("getInboxMessagesByReceiver: %v", got)
	}
	if got := alice.call("getInboxMessageById", msgid, "yes"); got != "API Error 0023: Bool expected in readStatus, saw <type 'str'> instead." {
		t.Errorf("readStatus not bool: %q", got)
	}
	if got := alice.call("getInboxMessageById", "xyz"); got != "API Error 0022: Decode error - Odd-length string. Had trouble while decoding string: 'xyz'" {
		t.Errorf("bad hex: %q", got)
	}
	if got := list(alice.jsonOf("getInboxMessageById", msgid, true), "inboxMessage"); len(got) != 1 || got[0]["read"] != 1.0 {
		t.Errorf("getInboxMessageById(read): %v", got)
	}
	msgs, _ := s.st.Messages(ctx, aliceU.ID, inbox.ID)
	seen := false
	for _, mm := range msgs {
		if slices.Contains(mm.Flags, `\Seen`) {
			seen = true
		}
	}
	if !seen {
		t.Errorf("read flag not set in IMAP: %+v", msgs)
	}
	if got := list(alice.jsonOf("getInboxMessageById", msgid, false), "inboxMessage"); len(got) != 1 || got[0]["read"] != 0.0 {
		t.Errorf("getInboxMessageById(unread): %v", got)
	}
	if got := list(alice.jsonOf("getInboxMessageById", msgid, true), "inboxMessage"); len(got) != 1 || got[0]["read"] != 1.0 {
		t.Errorf("getInboxMessageById(read again): %v", got)
	}
	if got := bob.call("trashInboxMessage", msgid); !strings.HasPrefix(got, "Trashed inbox message") {
		t.Errorf("bob trash: %q", got)
	}
	if got := list(alice.jsonOf("getAllInboxMessages"), "inboxMessages"); len(got) != 1 {
		t.Errorf("bob trashed alice's mail")
	}
	if got := alice.call("trashInboxMessage", msgid); got != "Trashed inbox message (assuming message existed)." {
		t.Errorf("trashInboxMessage: %q", got)
	}
	if got := list(alice.jsonOf("getAllInboxMessages"), "inboxMessages"); len(got) != 0 {
		t.Errorf("after trash: %v", got)
	}
	trash, _ := s.st.MailboxBySpecialUse(ctx, aliceU.ID, mailmap.SpecialTrash)
	if tm, _ := s.st.Messages(ctx, aliceU.ID, trash.ID); len(tm) != 1 {
		t.Errorf("Trash holds %d messages", len(tm))
	}
	// A broadcast in a subscription folder.
	rand.Read(hash[:])
	bcIn, _ := gateway.BuildIncoming(gateway.Incoming{Domain: domain, From: addrB, Subject: "cast", Body: "b",
		Date: time.Now(), InvHash: hash, Kind: gateway.IncomingBroadcast})
	subBox, err := s.st.CreateMailbox(ctx, aliceU.ID, gateway.SubscriptionFolder("Bob", addrB), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.st.DeliverOnce(ctx, aliceU.ID, subBox.ID, hash[:], bcIn, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := list(alice.jsonOf("getInboxMessagesByReceiver", "[Broadcast subscribers]"), "inboxMessages"); len(got) != 1 || unb64(t, got[0]["subject"]) != "cast" {
		t.Errorf("broadcast in the inbox: %v", got)
	}
	if got := alice.call("trashMessage", hex.EncodeToString(hash[:])); got != "Trashed message (assuming message existed)." {
		t.Errorf("trashMessage: %q", got)
	}

	// Status.
	cs := alice.jsonOf("clientStatus")
	if cs["softwareName"] != "bmgate" || cs["networkConnections"] != 3.0 || cs["numberOfMessagesProcessed"] != 7.0 ||
		cs["networkStatus"] != "connectedButHaveNotReceivedIncomingConnections" {
		t.Errorf("clientStatus: %v", cs)
	}
	// Logging in with one's own address works as for SMTP.
	if got := s.client(t, addrA, "alice-pw").call("helloWorld", "x", "y"); got != "x-y" {
		t.Errorf("login with the address: %q", got)
	}
}

func TestHTTP(t *testing.T) {
	s := newSite(t, filepath.Join(t.TempDir(), "api.db"))
	resp, err := http.Get(s.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	resp, err = http.Post(s.srv.URL+"/elsewhere", "text/xml", strings.NewReader("<methodCall/>"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST elsewhere: %d", resp.StatusCode)
	}
	big := "<methodCall><methodName>x</methodName><params><param><value><string>" + strings.Repeat("a", pyapi.MaxBody) + "</string></value></param></params></methodCall>"
	resp, err = http.Post(s.srv.URL+"/RPC2", "text/xml", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("big body: %d", resp.StatusCode)
	}
}

// TestLoginGuard: logins go through the login guard SMTP and IMAP use, so
// failures are counted in the shared table.
func TestLoginGuard(t *testing.T) {
	ctx := context.Background()
	s := newSite(t, filepath.Join(t.TempDir(), "api.db"))
	guard := loginguard.New(loginguard.Config{Store: s.st, BaseDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxWait: 5 * time.Second})
	api, err := pyapi.New(pyapi.Config{Store: s.st, Gateway: s.gw, Guard: guard, Network: params.Mainnet, Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	bad := &rpc{t: t, url: srv.URL, user: "alice", pass: "wrong"}
	if got := bad.call("helloWorld", "a", "b"); got != pyapi.AuthFailed {
		t.Fatalf("bad password: %q", got)
	}
	entries, err := s.st.LoginGuardEntries(ctx, 10)
	if err != nil || len(entries) == 0 {
		t.Fatalf("no failure recorded: %v %v", entries, err)
	}
	good := &rpc{t: t, url: srv.URL, user: "alice", pass: "alice-pw"}
	if got := good.call("helloWorld", "a", "b"); got != "a-b" {
		t.Fatalf("good password after a failure: %q", got)
	}
}
