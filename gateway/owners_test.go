package gateway

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/mailmap"
)

// Rules the gateway once wrote down a second time; each now calls the one
// place that owns it. These tests pin the cases where the copies could have
// answered differently.

// TestAckTTLIsObjects: ackTTL is object.AckTTL, also for msg TTLs with a
// fraction of a second (object.AckTTL counts whole seconds).
func TestAckTTLIsObjects(t *testing.T) {
	const day = 24 * time.Hour
	for ttl, want := range map[time.Duration]time.Duration{
		-time.Second: day, 0: day, time.Hour: day,
		day - time.Nanosecond: day, day - 500*time.Millisecond: day, day: 7 * day, day + time.Nanosecond: 7 * day,
		7*day - time.Nanosecond: 7 * day, 7 * day: 28 * day, 28 * day: 28 * day, 56 * day: 28 * day,
	} {
		if got := ackTTL(ttl); got != want {
			t.Errorf("ackTTL(%v) = %v, want %v", ttl, got, want)
		}
		if got := time.Duration(object.AckTTL(int64(ttl/time.Second))) * time.Second; got != want {
			t.Errorf("object.AckTTL(%v) = %v, want %v", ttl, got, want)
		}
	}
}

// TestDoesAckIsIdentitys: the bit the gateway publishes and tests is the
// one bmcore/identity defines and object.PubkeyData.DoesAck reads.
func TestDoesAckIsIdentitys(t *testing.T) {
	if doesAck != identity.BitfieldDoesAck {
		t.Fatalf("doesAck = %#x, identity.BitfieldDoesAck = %#x", doesAck, identity.BitfieldDoesAck)
	}
	for _, bf := range []uint32{0, 1, 2, 3, 0x80000000, 0x80000001, math.MaxUint32, math.MaxUint32 - 1} {
		if got, want := bf&doesAck != 0, (object.PubkeyData{Bitfield: bf}).DoesAck(); got != want {
			t.Errorf("bitfield %#x: gateway says %v, object %v", bf, got, want)
		}
	}
}

// recipientStore answers the look-ups of CheckRecipient: no aliases, no
// local identities. Anything else it is asked panics.
type recipientStore struct{ mailmap.Store }

func (recipientStore) ResolveAlias(context.Context, int64, string) (string, error) {
	return "", mailmap.ErrNotFound
}

func (recipientStore) IdentityByAddress(context.Context, string) (mailmap.Identity, error) {
	return mailmap.Identity{}, mailmap.ErrNotFound
}

// TestCheckRecipientBroadcast: CheckRecipient takes a recipient for the
// broadcast address exactly when IsBroadcastAddress does (it once split the
// address on its own and missed the angle-bracket and padded forms).
func TestCheckRecipientBroadcast(t *testing.T) {
	g := &Gateway{cfg: Config{Domain: domain}, store: recipientStore{}}
	for _, rcpt := range []string{
		"broadcast@" + domain, "Broadcast@BMGATE.local", "<broadcast@" + domain + ">", " broadcast@" + domain + " ",
		"broadcast@example.org", "broadcasts@" + domain, "broadcast", "broadcast@" + domain + ".eu",
		"broadcast@x@" + domain, addrV4 + "@" + domain,
	} {
		r, err := g.CheckRecipient(context.Background(), mailmap.User{ID: 1}, rcpt)
		isBroadcast := err == nil && r.Kind == mailmap.OutboxBroadcast
		if want := IsBroadcastAddress(rcpt, domain); isBroadcast != want {
			t.Errorf("CheckRecipient(%q): broadcast %v (err %v), IsBroadcastAddress %v", rcpt, isBroadcast, err, want)
		}
		if isBroadcast && (r.Address != "" || r.Orig != rcpt) {
			t.Errorf("CheckRecipient(%q) = %+v", rcpt, r)
		}
	}
}

// TestNoStringlyTypedLiterals keeps the typed constants the only spelling
// of report actions, status codes and incoming kinds in the gateway's code.
// Go converts an untyped string literal to Action, DSNStatus or
// IncomingKind silently, so a misspelt literal ("delivred", "5.4.O") would
// still compile; this finds every literal that is given one of those types
// outside the declarations of the constants. Only the gateway's own files
// are type-checked: imports are stubbed, which leaves their types unknown
// but the gateway's own types exact.
func TestNoStringlyTypedLiterals(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var parsed []*ast.File
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, f)
	}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
	conf := types.Config{
		Importer: stubImporter{},
		Error:    func(error) {}, // unresolved imports: expected
	}
	pkg, _ := conf.Check("github.com/bmgate/bmgate/gateway", fset, parsed, info)
	typed := map[string]bool{"Action": true, "DSNStatus": true, "IncomingKind": true}
	checked := 0
	for _, f := range parsed {
		ast.Inspect(f, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok {
				if id, ok := vs.Type.(*ast.Ident); ok && typed[id.Name] {
					return false // the constants' own declarations
				}
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			named, ok := info.Types[lit].Type.(*types.Named)
			if !ok || named.Obj().Pkg() != pkg || !typed[named.Obj().Name()] {
				return true
			}
			t.Errorf("%s: literal %s of type %s; use the %[3]s constants", fset.Position(lit.Pos()), lit.Value, named.Obj().Name())
			return true
		})
		checked++
	}
	if checked < 10 {
		t.Fatalf("checked only %d files", checked)
	}
}

// stubImporter makes every import an empty package.
type stubImporter struct{}

func (stubImporter) Import(path string) (*types.Package, error) {
	return nil, fmt.Errorf("not imported: %s", path)
}
