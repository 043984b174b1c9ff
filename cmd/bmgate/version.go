package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/bmgate/bmgate/bmcore/node"
)

// version is stamped into release builds:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/bmgate
//
// (the Dockerfile passes its VERSION build argument so). Empty: see
// Version.
var version string

// Version is the one version string of this binary: what `bmgate version`
// prints, /status and `bmgate status` show, bmgate_build_info carries and
// peers see in the user agent. In order: the stamped version; the module
// version of a `go install …@vX`; the release version with "-dev" and the
// commit when the build saw a git checkout; the release version with
// "-dev" (a build without .git, such as a docker build of a source tree).
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return node.Version + "-dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return node.Version + "-dev+" + rev + dirty
	}
	return node.Version + "-dev"
}

// userAgent is what the node tells peers (docs/protocol.md §3.1): the
// same version string as everywhere else.
func userAgent() string { return "/bmgate:" + Version() + "/" }

var cmdVersion = &command{
	name:    "version",
	summary: "Print the version of bmgate (the one the admin listener, /metrics and peers see) and of Go.",
	run: func(ctx context.Context, inv *invocation) error {
		if err := inv.parseFlags(0, 0); err != nil {
			return err
		}
		fmt.Fprintf(inv.stdout, "bmgate %s (%s, %s/%s)\n", Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	},
}

func init() { commands = append(commands, cmdVersion) }
