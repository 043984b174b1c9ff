package main

import (
	"context"
	"fmt"
	"time"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
)

// The login guard's state lives in the database (package loginguard), so
// these commands see and change what every running instance uses.

var cmdLoginGuardList = &command{
	name:    "login-guard list",
	args:    "[--known]",
	summary: "List the failed-login counts of client addresses and accounts, and what they lock until when (tab-separated); --known adds the addresses each account logged in from.",
	run: func(ctx context.Context, inv *invocation) error {
		known := inv.fs.Bool("known", false, "also list the known addresses of the accounts")
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		st, err := inv.openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		entries, err := st.LoginGuardEntries(ctx, 0)
		if err != nil {
			return err
		}
		now := time.Now()
		stamp := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }
		for _, e := range entries {
			switch e.Kind {
			case mailmap.GuardIP, mailmap.GuardUser:
				if e.Failures == 0 && !e.NextAt.After(now) {
					continue // a reservation of a successful login, nothing to show
				}
				key := e.IP
				if e.Kind == mailmap.GuardUser {
					key = e.Name
				}
				state := "not locked"
				if e.NextAt.After(now) {
					state = fmt.Sprintf("locked until %s (%v)", stamp(e.NextAt), e.NextAt.Sub(now).Round(time.Second))
				}
				fmt.Fprintf(inv.stdout, "%s\t%s\t%d failures\tlast %s\t%s\n", e.Kind, key, e.Failures, stamp(e.LastAt), state)
			case mailmap.GuardPair:
				if !*known && e.Failures == 0 && !e.NextAt.After(now) {
					continue
				}
				state := "known"
				if e.NextAt.After(now) {
					state = fmt.Sprintf("known, locked until %s (%v)", stamp(e.NextAt), e.NextAt.Sub(now).Round(time.Second))
				}
				fmt.Fprintf(inv.stdout, "known\t%s from %s\t%d failures\tlast login %s\t%s\n", e.Name, e.IP, e.Failures, stamp(e.OKAt), state)
			}
		}
		return nil
	},
}

var cmdLoginGuardClear = &command{
	name:    "login-guard clear",
	args:    "--ip ADDRESS | --user NAME | --all",
	summary: "Forget failed logins and lift the locks they hold: of a client address (--ip), of an account (--user), both, or all (--all). Addresses known to accounts stay known.",
	run: func(ctx context.Context, inv *invocation) error {
		ip := inv.fs.String("ip", "", "the client `ADDRESS` (an IPv6 address stands for its /64)")
		user := inv.fs.String("user", "", "the account `NAME`")
		all := inv.fs.Bool("all", false, "every address and account")
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		if *all != (*ip == "" && *user == "") {
			return fmt.Errorf("%w: give --ip, --user or both, or --all", errUsage)
		}
		ipKey, nameKey := "", ""
		if *ip != "" {
			ipKey = loginguard.IPKey(*ip)
		}
		if *user != "" {
			nameKey = loginguard.NameKey(*user)
		}
		st, err := inv.openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		n, err := st.LoginGuardClear(ctx, ipKey, nameKey)
		if err != nil {
			return err
		}
		fmt.Fprintf(inv.stdout, "cleared %d entries\n", n)
		return nil
	},
}

func init() { commands = append(commands, cmdLoginGuardList, cmdLoginGuardClear) }
