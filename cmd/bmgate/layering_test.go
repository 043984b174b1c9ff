package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The arrows between bmgate's packages (docs/architecture.md), checked on
// the import lists `go list` reports for the whole module: a package's own
// files, its in-package tests and its external (_test package) tests.

const modulePath = "github.com/bmgate/bmgate"

// listedPackage is the part of `go list -json` the rules read.
type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// rel is an import path relative to the module ("gateway/e2e"), or "" for
// a path outside it.
func rel(path string) string {
	if path == modulePath {
		return "."
	}
	r, ok := strings.CutPrefix(path, modulePath+"/")
	if !ok {
		return ""
	}
	return r
}

// under reports whether the module-relative path p is dir or below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// listModule runs `go list` on the module from its root (../.. from here).
func listModule(t *testing.T) []listedPackage {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports,Error", "./...")
	cmd.Dir = filepath.Join("..", "..")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []listedPackage
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	// Guard against a vacuous pass: the packages the rules are about must
	// be in the listing.
	for _, want := range []string{"bmcore/node", "bmcore/inventory", "gateway", "gateway/e2e", "smtpd", "imapd", "mailmap", "cmd/bmgate"} {
		if !slices.ContainsFunc(pkgs, func(p listedPackage) bool { return rel(p.ImportPath) == want }) {
			t.Fatalf("go list did not report %s", want)
		}
	}
	return pkgs
}

// importSet selects which of a package's import lists a rule reads.
type importSet int

const (
	code  importSet = 1 << iota // the package's own files
	tests                       // its in-package _test.go files
	xtest                       // its external _test package
	all   = code | tests | xtest
)

func (p listedPackage) imports(s importSet) []string {
	var out []string
	if s&code != 0 {
		out = append(out, p.Imports...)
	}
	if s&tests != 0 {
		out = append(out, p.TestImports...)
	}
	if s&xtest != 0 {
		out = append(out, p.XTestImports...)
	}
	return out
}

func TestLayering(t *testing.T) {
	pkgs := listModule(t)

	// forbid reports every import in set of the packages that applies to
	// (module-relative paths) that bad matches.
	forbid := func(rule string, applies func(pkg string) bool, set importSet, bad func(imp string) bool) {
		t.Helper()
		for _, p := range pkgs {
			pkg := rel(p.ImportPath)
			if !applies(pkg) {
				continue
			}
			seen := map[string]bool{}
			for _, imp := range p.imports(set) {
				if bad(imp) && !seen[imp] {
					seen[imp] = true
					t.Errorf("%s imports %s: %s", pkg, imp, rule)
				}
			}
		}
	}
	isModule := func(dir string) func(string) bool {
		return func(imp string) bool { r := rel(imp); return r != "" && under(r, dir) }
	}
	anyOf := func(fs ...func(string) bool) func(string) bool {
		return func(s string) bool { return slices.ContainsFunc(fs, func(f func(string) bool) bool { return f(s) }) }
	}
	isGoSMTP := func(imp string) bool { return under(imp, "github.com/emersion/go-smtp") }

	// The node runtime is started by the binary and by the system tests
	// that assemble whole sites; everything else sees the network through
	// bmcore/inventory (what is stored) and gateway.Publisher (what is
	// sent).
	forbid("only cmd/bmgate and gateway/e2e may import the node runtime (use bmcore/inventory)",
		func(pkg string) bool {
			return !under(pkg, "bmcore/node") && pkg != "cmd/bmgate" && pkg != "gateway/e2e"
		},
		all, isModule("bmcore/node"))

	// go-smtp is smtpd's business. The system tests in cmd/bmgate and
	// gateway/e2e use its client to submit mail the way a mail client does.
	forbid("only smtpd may import go-smtp",
		func(pkg string) bool { return pkg != "smtpd" },
		code, isGoSMTP)
	forbid("only smtpd and the system tests (cmd/bmgate, gateway/e2e) may use go-smtp",
		func(pkg string) bool { return pkg != "smtpd" && pkg != "cmd/bmgate" && pkg != "gateway/e2e" },
		tests|xtest, isGoSMTP)

	// bmcore is the Bitmessage protocol: it knows nothing of mail, SQL or
	// the binary, so of this module it imports only bmcore.
	forbid("bmcore imports nothing of the module outside bmcore",
		func(pkg string) bool { return under(pkg, "bmcore") },
		all, func(imp string) bool { r := rel(imp); return r != "" && !under(r, "bmcore") })

	// The inventory types are a leaf: a store implements them without
	// pulling in anything but the wire types.
	forbid("bmcore/inventory imports only bmcore/wire of the module",
		func(pkg string) bool { return pkg == "bmcore/inventory" },
		code, func(imp string) bool { r := rel(imp); return r != "" && r != "bmcore/wire" })

	// imapd serves the store's mailboxes; Bitmessage is behind the gateway.
	forbid("imapd knows nothing of Bitmessage",
		func(pkg string) bool { return under(pkg, "imapd") },
		all, isModule("bmcore"))

	// The gateway sits below the mail servers: smtpd calls it, never the
	// other way round, and its own tests do not assemble the servers (the
	// system tests that do are gateway/e2e).
	forbid("gateway and its tests import no mail server, no cmd and no go-smtp",
		func(pkg string) bool { return pkg == "gateway" },
		all, anyOf(isModule("smtpd"), isModule("imapd"), isModule("cmd"), isGoSMTP))

	// The store is below everything that uses it. (mailmap's external
	// tests may cross-check it against the gateway's rules.)
	forbid("mailmap imports no gateway, mail server, node runtime or cmd",
		func(pkg string) bool { return under(pkg, "mailmap") },
		code|tests, anyOf(isModule("gateway"), isModule("smtpd"), isModule("imapd"),
			isModule("bmcore/node"), isModule("cmd")))
}
