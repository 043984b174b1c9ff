package main

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/bmgate/bmgate/bmcore/wire"
)

var cmdInboundRetry = &command{
	name: "inbound retry",
	args: "HASH | --all",
	summary: "Try again inbound objects the gateway set aside after repeated failures (bmgate status lists them with their " +
		"error): the one with inventory hash HASH, or all of them. Do it once the cause is fixed (a full disk, a database " +
		"fault); each is tried again at once, with its attempts counted from zero, by whichever instance claims it.",
	run: func(ctx context.Context, inv *invocation) error {
		all := inv.fs.Bool("all", false, "every set-aside object")
		cfg, err := inv.parse(0, 1)
		if err != nil {
			return err
		}
		var h *wire.InvHash
		switch {
		case *all && len(inv.args) == 0:
		case !*all && len(inv.args) == 1:
			b, err := hex.DecodeString(inv.args[0])
			if err != nil || len(b) != len(wire.InvHash{}) {
				return fmt.Errorf("%w: %q is not an inventory hash (64 hex digits, as bmgate status shows)", errUsage, inv.args[0])
			}
			h = new(wire.InvHash)
			copy(h[:], b)
		default:
			return fmt.Errorf("%w: give one HASH or --all", errUsage)
		}
		st, err := inv.openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		n, err := st.RetrySetAside(ctx, h)
		if err != nil {
			return err
		}
		if h != nil && n == 0 {
			return fmt.Errorf("no set-aside object %s (bmgate status lists them)", h)
		}
		fmt.Fprintf(inv.stdout, "%d objects will be tried again\n", n)
		return nil
	},
}

func init() { commands = append(commands, cmdInboundRetry) }
