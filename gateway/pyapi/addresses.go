package pyapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
)

// Identities, chans, address book, subscriptions and the node's status.
// The identity rules are those of `bmgate address new` and `bmgate chan
// join` (cmd/bmgate/identities.go), repeated here in their few lines.

func (s *Server) helloWorld(_ context.Context, _ mailmap.User, p []any) (any, error) {
	if err := unpack(p, 2); err != nil {
		return nil, err
	}
	a, aok := p[0].(string)
	b, bok := p[1].(string)
	if !aok || !bok {
		return nil, unexpected(errors.New("cannot concatenate 'str' and non-str objects"))
	}
	return a + "-" + b, nil
}

func (s *Server) add(_ context.Context, _ mailmap.User, p []any) (any, error) {
	if err := unpack(p, 2); err != nil {
		return nil, err
	}
	switch a := p[0].(type) {
	case string:
		if b, ok := p[1].(string); ok {
			return a + b, nil
		}
	case int64:
		switch b := p[1].(type) {
		case int64:
			return a + b, nil
		case float64:
			return float64(a) + b, nil
		}
	case float64:
		switch b := p[1].(type) {
		case int64:
			return a + float64(b), nil
		case float64:
			return a + b, nil
		}
	}
	return nil, unexpected(errors.New("unsupported operand type(s) for +"))
}

// unpack is Python's `(a, b) = params`.
func unpack(p []any, n int) error {
	switch {
	case len(p) < n:
		return unexpected(fmt.Errorf("need more than %d value%s to unpack", len(p), plural(len(p))))
	case len(p) > n:
		return unexpected(errors.New("too many values to unpack"))
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func (s *Server) listAddresses(ctx context.Context, u mailmap.User, _ []any) (any, error) {
	return s.addressList(ctx, u, false)
}

func (s *Server) listAddresses2(ctx context.Context, u mailmap.User, _ []any) (any, error) {
	return s.addressList(ctx, u, true)
}

func (s *Server) addressList(ctx context.Context, u mailmap.User, b64Labels bool) (any, error) {
	ids, err := s.cfg.Store.Identities(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	var items []obj
	for _, id := range ids {
		stream := uint64(1)
		if a, err := address.Decode(id.Address); err == nil {
			stream = a.Stream
		}
		label := id.Label
		if b64Labels {
			label = b64(label)
		}
		items = append(items, obj{{"label", label}, {"address", id.Address}, {"stream", stream},
			{"enabled", true}, {"chan", id.Kind == mailmap.KindChan}})
	}
	return framed("addresses", items), nil
}

// difficulty is PyBitmessage's int(network default × factor), never below
// the network minimum (PyBitmessage raises a lower demand to it too).
func difficulty(base uint64, v any) (uint64, error) {
	f, err := num(v)
	if err != nil {
		return 0, err
	}
	d := math.Trunc(float64(base) * f)
	if d > 1e15 {
		return 0, unexpected(fmt.Errorf("difficulty factor %v is too large", f))
	}
	return max(base, uint64(max(d, 0))), nil
}

// powDemand reads optional totalDifficulty and smallMessageDifficulty.
func (s *Server) powDemand(total, small any) (ntpb, extra uint64, err error) {
	ntpb, extra = s.cfg.Network.NonceTrialsPerByte, s.cfg.Network.ExtraBytes
	if total != nil {
		if ntpb, err = difficulty(s.cfg.Network.NonceTrialsPerByte, total); err != nil {
			return 0, 0, err
		}
	}
	if small != nil {
		if extra, err = difficulty(s.cfg.Network.ExtraBytes, small); err != nil {
			return 0, 0, err
		}
	}
	return ntpb, extra, nil
}

var errEighteen = unexpected(errors.New("eighteenByteRipe addresses cannot be made by bmgate; pass false"))

func (s *Server) createRandomAddress(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	if len(p) > 4 {
		return nil, apiErr(0, "Too many parameters!")
	}
	var total, small any
	if len(p) >= 3 {
		total = p[2]
	}
	if len(p) == 4 {
		small = p[3]
	}
	ntpb, extra, err := s.powDemand(total, small)
	if err != nil {
		return nil, err
	}
	label, err := utf8Label(p[0])
	if err != nil {
		return nil, err
	}
	if len(p) >= 2 && truthy(p[1]) {
		return nil, errEighteen
	}
	id, err := identity.NewRandom(1, nil)
	if err != nil {
		return nil, err
	}
	m, err := s.cfg.Store.AddIdentity(ctx, mailmap.Identity{
		UserID: u.ID, Address: id.Address.String(), Label: cleanLabel(label), Kind: mailmap.KindNormal,
		SigningKey: id.Signing.Serialize(), EncryptionKey: id.Encryption.Serialize(),
		PublishPubkey: true, NonceTrialsPerByte: ntpb, ExtraBytes: extra,
	})
	if err != nil {
		return nil, err
	}
	return m.Address, nil
}

// truthy is Python's bool(v).
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case int64:
		return v != 0
	case float64:
		return v != 0
	case string:
		return v != ""
	case []byte:
		return len(v) > 0
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

// cleanLabel makes a label one storable line.
func cleanLabel(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return strings.TrimSpace(s)
}

func (s *Server) createDeterministicAddresses(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	if len(p) > 7 {
		return nil, apiErr(0, "Too many parameters!")
	}
	arg := func(i int, def any) any {
		if i < len(p) {
			return p[i]
		}
		return def
	}
	var total, small any
	if len(p) >= 6 {
		total = p[5]
	}
	if len(p) == 7 {
		small = p[6]
	}
	ntpb, extra, err := s.powDemand(total, small)
	if err != nil {
		return nil, err
	}
	ppText, err := str(p[0])
	if err != nil {
		return nil, err
	}
	if len(ppText) == 0 {
		return nil, apiErr(1, "The specified passphrase is blank.")
	}
	eighteen := arg(4, false)
	if _, ok := eighteen.(bool); !ok {
		return nil, apiErr(23, "Bool expected in eighteenByteRipe, saw %s instead", pyType(eighteen))
	}
	passphrase, err := decodeB64(p[0])
	if err != nil {
		return nil, err
	}
	count, err := integer(arg(1, int64(1)))
	if err != nil {
		return nil, err
	}
	version, err := integer(arg(2, int64(0)))
	if err != nil {
		return nil, err
	}
	stream, err := integer(arg(3, int64(0)))
	if err != nil {
		return nil, err
	}
	if version == 0 {
		version = 4
	}
	if version != 3 && version != 4 {
		return nil, apiErr(2, "The address version number currently must be 3, 4, or 0 (which means auto-select). %d isn't supported.", version)
	}
	if stream == 0 {
		stream = 1
	}
	if stream != 1 {
		return nil, apiErr(3, "The stream number must be 1 (or 0 which means auto-select). Others aren't supported.")
	}
	if count == 0 {
		return nil, apiErr(4, "Why would you ask me to generate 0 addresses for you?")
	}
	if count > 999 {
		return nil, apiErr(5, "You have (accidentally?) specified too many addresses to make. Maximum 999. This check only exists to prevent mischief; if you really want to create more addresses than this, contact the Bitmessage developers and we can modify the check or you can do it yourself by searching the source code for this message.")
	}
	if count < 0 {
		count = 0
	}
	if eighteen.(bool) {
		return nil, errEighteen
	}
	ids, err := identity.Deterministic(passphrase, uint64(version), uint64(stream), int(count))
	if err != nil {
		return nil, err
	}
	var made []string
	for _, id := range ids {
		addr := id.Address.String()
		owners, err := s.cfg.Store.IdentitiesByAddress(ctx, addr)
		if err != nil {
			return nil, err
		}
		mine := false
		for _, o := range owners {
			if o.UserID != u.ID {
				return nil, apiErr(16, "%s belongs to another account of this server.", addr)
			}
			mine = true
		}
		if mine {
			continue // PyBitmessage does not add (or list) an address it has
		}
		_, err = s.cfg.Store.AddIdentity(ctx, mailmap.Identity{
			UserID: u.ID, Address: addr, Label: "unused API address", Kind: mailmap.KindNormal,
			SigningKey: id.Signing.Serialize(), EncryptionKey: id.Encryption.Serialize(),
			PublishPubkey: true, NonceTrialsPerByte: ntpb, ExtraBytes: extra,
		})
		if errors.Is(err, mailmap.ErrExists) {
			return nil, apiErr(16, "%s belongs to another account of this server.", addr)
		}
		if err != nil {
			return nil, err
		}
		made = append(made, addr)
	}
	var b strings.Builder
	b.WriteString(`{"addresses":[`)
	for i, a := range made {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + a + `"`)
	}
	b.WriteString("]}")
	return b.String(), nil
}

func (s *Server) getDeterministicAddress(_ context.Context, _ mailmap.User, p []any) (any, error) {
	if len(p) != 3 {
		return nil, apiErr(0, "I need exactly 3 parameters.")
	}
	ppText, err := str(p[0])
	if err != nil {
		return nil, err
	}
	if len(ppText) == 0 {
		return nil, apiErr(1, "The specified passphrase is blank.")
	}
	passphrase, err := decodeB64(p[0])
	if err != nil {
		return nil, err
	}
	version, err := integer(p[1])
	if err != nil {
		return nil, err
	}
	if version != 3 && version != 4 {
		return nil, apiErr(2, "The address version number currently must be 3 or 4. %d isn't supported.", version)
	}
	stream, err := integer(p[2])
	if err != nil {
		return nil, err
	}
	if stream != 1 {
		return nil, apiErr(3, " The stream number must be 1. Others aren't supported.")
	}
	ids, err := identity.Deterministic(passphrase, uint64(version), 1, 1)
	if err != nil {
		return nil, err
	}
	return ids[0].Address.String(), nil
}

func (s *Server) createChan(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters.")
	}
	if len(p) > 1 {
		return nil, apiErr(0, "I need parameters.")
	}
	passphrase, err := decodeB64(p[0])
	if err != nil {
		return nil, err
	}
	if len(passphrase) == 0 {
		return nil, apiErr(1, "The specified passphrase is blank.")
	}
	id, err := identity.Chan(string(passphrase))
	if err != nil {
		return nil, err
	}
	if err := s.addChan(ctx, u, id, string(passphrase)); err != nil {
		return nil, err
	}
	return id.Address.String(), nil
}

func (s *Server) joinChan(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) != 2 {
		return nil, apiErr(0, "I need two parameters.")
	}
	passphrase, err := decodeB64(p[0])
	if err != nil {
		return nil, err
	}
	if len(passphrase) == 0 {
		return nil, apiErr(1, "The specified passphrase is blank.")
	}
	addr, _, err := verifyAddress(p[1])
	if err != nil {
		return nil, err
	}
	id, err := identity.JoinChan(string(passphrase), addr)
	if errors.Is(err, identity.ErrChanAddress) {
		return nil, apiErr(18, "Chan name does not match address.")
	}
	if err != nil {
		return nil, err
	}
	if err := s.addChan(ctx, u, id, string(passphrase)); err != nil {
		return nil, err
	}
	return "success", nil
}

// addChan stores a chan for the user, named by its address (bmgate never
// shows a passphrase), with its folder.
func (s *Server) addChan(ctx context.Context, u mailmap.User, id *identity.Identity, passphrase string) error {
	addr := id.Address.String()
	ids, err := s.cfg.Store.Identities(ctx, u.ID)
	if err != nil {
		return err
	}
	for _, o := range ids {
		if o.Address == addr {
			return apiErr(24, "Chan address is already present.")
		}
	}
	name := mailmap.DefaultChanName(addr)
	_, err = s.cfg.Store.AddIdentity(ctx, mailmap.Identity{
		UserID: u.ID, Address: addr, Label: name, Kind: mailmap.KindChan,
		SigningKey: id.Signing.Serialize(), EncryptionKey: id.Encryption.Serialize(),
		ChanPassphrase: passphrase, PublishPubkey: false,
		NonceTrialsPerByte: s.cfg.Network.NonceTrialsPerByte, ExtraBytes: s.cfg.Network.ExtraBytes,
	})
	if errors.Is(err, mailmap.ErrExists) {
		return apiErr(24, "Chan address is already present.")
	}
	if err != nil {
		return err
	}
	return gateway.EnsureFolder(ctx, s.cfg.Store, u.ID, gateway.ChanFolder(name, addr))
}

// ownIdentity finds one of the user's identities (error 13 when none).
func (s *Server) ownIdentity(ctx context.Context, u mailmap.User, addr string) (mailmap.Identity, error) {
	ids, err := s.cfg.Store.Identities(ctx, u.ID)
	if err != nil {
		return mailmap.Identity{}, err
	}
	for _, id := range ids {
		if id.Address == addr {
			return id, nil
		}
	}
	return mailmap.Identity{}, apiErr(13, "Could not find this address in your keys.dat file.")
}

func (s *Server) leaveChan(ctx context.Context, u mailmap.User, p []any) (any, error) {
	return s.removeIdentity(ctx, u, p, true)
}

func (s *Server) deleteAddress(ctx context.Context, u mailmap.User, p []any) (any, error) {
	return s.removeIdentity(ctx, u, p, false)
}

func (s *Server) removeIdentity(ctx context.Context, u mailmap.User, p []any, chanOnly bool) (any, error) {
	if len(p) != 1 {
		return nil, apiErr(0, "I need parameters.")
	}
	_, addr, err := verifyAddress(p[0])
	if err != nil {
		return nil, err
	}
	id, err := s.ownIdentity(ctx, u, addr)
	if err != nil {
		return nil, err
	}
	if chanOnly && id.Kind != mailmap.KindChan {
		return nil, apiErr(25, "Specified address is not a chan address. Use deleteAddress API call instead.")
	}
	if err := s.cfg.Store.DeleteIdentity(ctx, u.ID, id.ID); err != nil {
		return nil, err
	}
	return "success", nil
}

func (s *Server) decodeAddress(_ context.Context, _ mailmap.User, p []any) (any, error) {
	if len(p) != 1 {
		return nil, apiErr(0, "I need 1 parameter!")
	}
	text, err := str(p[0])
	if err != nil {
		return nil, err
	}
	a, derr := address.Decode(text)
	if isVersion1(text, derr) {
		// PyBitmessage decodes the dead version 1 too: the ripe is the
		// 20 bytes before the checksum.
		data, _ := address.DecodeBase58(strings.TrimPrefix(strings.TrimSpace(text), address.Prefix))
		_, n, _ := wire.ReadVarInt(data)
		stream, _, _ := wire.ReadVarInt(data[n:])
		var ripe []byte
		if len(data) >= 24 {
			ripe = data[len(data)-24 : len(data)-4]
		}
		return pyJSON(obj{{"status", "success"}, {"addressVersion", 1}, {"streamNumber", stream},
			{"ripe", base64.StdEncoding.EncodeToString(ripe)}}), nil
	}
	if derr != nil {
		return pyJSON(obj{{"status", decodeStatus(derr)}, {"addressVersion", 0}, {"streamNumber", 0}, {"ripe", ""}}), nil
	}
	return pyJSON(obj{{"status", "success"}, {"addressVersion", a.Version}, {"streamNumber", a.Stream},
		{"ripe", base64.StdEncoding.EncodeToString(a.Ripe[:])}}), nil
}

// Address book: the user's aliases LABEL@domain.

// aliasLocal turns a PyBitmessage label into an alias' local part: what a
// mail address cannot hold becomes '.'.
func aliasLocal(label string) string {
	var b strings.Builder
	dot := false
	for _, r := range strings.TrimSpace(strings.ToLower(label)) {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune("<>()[]\\,;:\"@", r) {
			if !dot && b.Len() > 0 {
				b.WriteByte('.')
			}
			dot = true
			continue
		}
		b.WriteRune(r)
		dot = false
	}
	return strings.Trim(b.String(), ".")
}

func (s *Server) listAddressBook(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) > 1 {
		return nil, apiErr(0, "Too many paremeters, max 1")
	}
	var want *string
	if len(p) == 1 {
		l, err := decodeB64(p[0])
		if err != nil {
			return nil, err
		}
		w := string(l)
		want = &w
	}
	cs, err := s.cfg.Store.Contacts(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	var items []obj
	for _, c := range cs {
		label, _, _ := strings.Cut(c.Alias, "@")
		if want != nil && label != *want && label != aliasLocal(*want) {
			continue
		}
		items = append(items, obj{{"label", b64(label)}, {"address", c.Address}})
	}
	return framed("addresses", items), nil
}

func (s *Server) addAddressBook(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) != 2 {
		return nil, apiErr(0, "I need label and address")
	}
	labelBytes, err := decodeB64(p[1])
	if err != nil {
		return nil, err
	}
	text, err := str(p[0])
	if err != nil {
		return nil, err
	}
	_, addr, err := verifyAddress(addBM(text))
	if err != nil {
		return nil, err
	}
	cs, err := s.cfg.Store.Contacts(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if c.Address == addr {
			return nil, apiErr(16, "You already have this address in your address book.")
		}
	}
	local := aliasLocal(string(labelBytes))
	if local == "" || strings.HasPrefix(local, "bm-") || !utf8.ValidString(local) || len(local) > 64 {
		return nil, unexpected(fmt.Errorf("the label %s cannot name an alias (%s@%s): use letters, digits and . _ - +", pyRepr(string(labelBytes)), local, s.cfg.Domain))
	}
	alias := local + "@" + strings.ToLower(s.cfg.Domain)
	_, err = s.cfg.Store.AddContact(ctx, mailmap.Contact{UserID: u.ID, Alias: alias, Address: addr})
	if errors.Is(err, mailmap.ErrExists) {
		return nil, apiErr(16, "You already have an address book entry labelled %s.", local)
	}
	if err != nil {
		return nil, err
	}
	return fmt.Sprintf("Added address %s to address book", addr), nil
}

func (s *Server) deleteAddressBook(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) != 1 {
		return nil, apiErr(0, "I need an address")
	}
	text, err := str(p[0])
	if err != nil {
		return nil, err
	}
	_, addr, err := verifyAddress(addBM(text))
	if err != nil {
		return nil, err
	}
	cs, err := s.cfg.Store.Contacts(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if c.Address == addr {
			if err := s.cfg.Store.DeleteContact(ctx, u.ID, c.Alias); err != nil && !errors.Is(err, mailmap.ErrNotFound) {
				return nil, err
			}
		}
	}
	return fmt.Sprintf("Deleted address book entry for %s if it existed", addr), nil
}

// Subscriptions.

func (s *Server) listSubscriptions(ctx context.Context, u mailmap.User, _ []any) (any, error) {
	subs, err := s.cfg.Store.Subscriptions(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	list := []any{}
	for _, sub := range subs {
		list = append(list, obj{{"label", b64(sub.Label)}, {"address", sub.Address}, {"enabled", true}})
	}
	return pyJSON(obj{{"subscriptions", list}}), nil
}

func (s *Server) addSubscription(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	label := ""
	if len(p) == 2 {
		var err error
		if label, err = utf8Label(p[1]); err != nil {
			return nil, err
		}
	}
	if len(p) > 2 {
		return nil, apiErr(0, "I need either 1 or 2 parameters!")
	}
	text, err := str(p[0])
	if err != nil {
		return nil, err
	}
	_, addr, err := verifyAddress(addBM(text))
	if err != nil {
		return nil, err
	}
	sub, err := s.cfg.Store.AddSubscription(ctx, mailmap.Subscription{UserID: u.ID, Address: addr, Label: cleanLabel(label)})
	if errors.Is(err, mailmap.ErrExists) {
		return nil, apiErr(16, "You are already subscribed to that address.")
	}
	if err != nil {
		return nil, err
	}
	if err := gateway.EnsureFolder(ctx, s.cfg.Store, u.ID, gateway.SubscriptionFolder(sub.Label, sub.Address)); err != nil {
		return nil, err
	}
	return "Added subscription.", nil
}

func (s *Server) deleteSubscription(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) != 1 {
		return nil, apiErr(0, "I need 1 parameter!")
	}
	text, err := str(p[0])
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.DeleteSubscription(ctx, u.ID, addBM(text)); err != nil && !errors.Is(err, mailmap.ErrNotFound) {
		return nil, err
	}
	return "Deleted subscription if it existed.", nil
}

func (s *Server) clientStatus(_ context.Context, _ mailmap.User, _ []any) (any, error) {
	var st ClientStatus
	if s.cfg.Status != nil {
		st = s.cfg.Status()
	}
	status := "connectedAndReceivingIncomingConnections"
	switch {
	case st.NetworkConnections == 0:
		status = "notConnected"
	case !st.IncomingConnections:
		status = "connectedButHaveNotReceivedIncomingConnections"
	}
	return pyJSON(obj{{"networkConnections", st.NetworkConnections},
		{"numberOfMessagesProcessed", st.MessagesProcessed},
		{"numberOfBroadcastsProcessed", st.BroadcastsProcessed},
		{"numberOfPubkeysProcessed", st.PubkeysProcessed},
		{"networkStatus", status}, {"softwareName", "bmgate"}, {"softwareVersion", s.cfg.Version}}), nil
}
