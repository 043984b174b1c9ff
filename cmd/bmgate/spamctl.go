package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/mailmap"
)

// Spam control as PyBitmessage users know it: the blacklist or whitelist
// (per user here, a global setting there), the demanded difficulty of an
// address and mailing-list addresses.

// listKindArg reads "black" or "white".
func listKindArg(s string) (mailmap.ListKind, error) {
	k := mailmap.ListKind(strings.ToLower(s))
	if !k.Valid() {
		return "", fmt.Errorf("%w: %q is neither black nor white", errUsage, s)
	}
	return k, nil
}

var cmdListMode = &command{
	name: "list mode",
	args: "--user NAME black|white",
	summary: "Choose which of a user's sender lists applies, as PyBitmessage's blacklist/whitelist setting: black (the default) " +
		"drops Bitmessage mail from the enabled entries of the blacklist; white accepts mail only from the enabled entries " +
		"of the whitelist. Chan posts are filtered too, each member by their own lists; subscribed broadcasts are not.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the user")
		cfg, err := inv.parse(1, 1)
		if err != nil {
			return err
		}
		mode, err := listKindArg(inv.args[0])
		if err != nil {
			return err
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			if err := st.SetListMode(ctx, u.ID, mode); err != nil {
				return fmt.Errorf("set list mode: %w", err)
			}
			fmt.Fprintf(inv.stdout, "%s: %slist mode\n", u.Name, mode)
			return nil
		})
	},
}

var cmdListAdd = &command{
	name: "list add",
	args: "--user NAME [--label TEXT] [--disabled] black|white BM-ADDRESS",
	summary: "Put a sender on one of a user's lists (enabled unless --disabled). Which list applies is set by list mode. " +
		"An enabled whitelist entry also skips the proof-of-work demand of the user's addresses, in either mode, as in PyBitmessage.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the user")
		label := inv.fs.String("label", "", "a label for the entry, shown by list show")
		disabled := inv.fs.Bool("disabled", false, "add the entry disabled (it does not count until list enable)")
		cfg, err := inv.parse(2, 2)
		if err != nil {
			return err
		}
		kind, err := listKindArg(inv.args[0])
		if err != nil {
			return err
		}
		addr, err := address.Decode(inv.args[1])
		if err != nil {
			return err
		}
		if strings.ContainsFunc(*label, unicode.IsControl) || !utf8.ValidString(*label) || len(*label) > 1024 {
			return fmt.Errorf("%w: --label must be one line of text of at most 1024 bytes", errUsage)
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			_, err := st.AddListEntry(ctx, mailmap.ListEntry{UserID: u.ID, Kind: kind, Address: addr.String(), Label: *label, Enabled: !*disabled})
			if errors.Is(err, mailmap.ErrExists) {
				return fmt.Errorf("%s is already on %s's %slist", addr, u.Name, kind)
			}
			if err != nil {
				return fmt.Errorf("add list entry: %w", err)
			}
			fmt.Fprintf(inv.stdout, "%s: %s added to the %slist\n", u.Name, addr, kind)
			return nil
		})
	},
}

// listEntryCommand is list del, list enable and list disable.
func listEntryCommand(name, summary, done string, act func(ctx context.Context, st mailmap.Store, userID int64, kind mailmap.ListKind, addr string) error) *command {
	return &command{
		name:    "list " + name,
		args:    "--user NAME black|white BM-ADDRESS",
		summary: summary,
		run: func(ctx context.Context, inv *invocation) error {
			user := inv.fs.String("user", "", "the `NAME` of the user")
			cfg, err := inv.parse(2, 2)
			if err != nil {
				return err
			}
			kind, err := listKindArg(inv.args[0])
			if err != nil {
				return err
			}
			addr := inv.args[1]
			if a, err := address.Decode(addr); err == nil {
				addr = a.String()
			}
			return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
				err := act(ctx, st, u.ID, kind, addr)
				if errors.Is(err, mailmap.ErrNotFound) {
					return fmt.Errorf("%s is not on %s's %slist", addr, u.Name, kind)
				}
				if err != nil {
					return fmt.Errorf("list %s: %w", name, err)
				}
				fmt.Fprintf(inv.stdout, "%s: %s %s on the %slist\n", u.Name, addr, done, kind)
				return nil
			})
		},
	}
}

var (
	cmdListDel = listEntryCommand("del", "Take a sender off one of a user's lists.", "removed",
		func(ctx context.Context, st mailmap.Store, userID int64, kind mailmap.ListKind, addr string) error {
			return st.DeleteListEntry(ctx, userID, kind, addr)
		})
	cmdListEnable = listEntryCommand("enable", "Enable an entry of one of a user's lists.", "enabled",
		func(ctx context.Context, st mailmap.Store, userID int64, kind mailmap.ListKind, addr string) error {
			return st.SetListEntryEnabled(ctx, userID, kind, addr, true)
		})
	cmdListDisable = listEntryCommand("disable", "Disable an entry of one of a user's lists: it is kept but does not count.", "disabled",
		func(ctx context.Context, st mailmap.Store, userID int64, kind mailmap.ListKind, addr string) error {
			return st.SetListEntryEnabled(ctx, userID, kind, addr, false)
		})
)

var cmdListShow = &command{
	name:    "list show",
	args:    "--user NAME",
	summary: "Show a user's list mode, then each entry: list, address, enabled or disabled, label (tab-separated).",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the user")
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			mode, err := st.ListMode(ctx, u.ID)
			if err != nil {
				return fmt.Errorf("read list mode: %w", err)
			}
			entries, err := st.ListEntries(ctx, u.ID)
			if err != nil {
				return fmt.Errorf("read lists: %w", err)
			}
			fmt.Fprintf(inv.stdout, "mode\t%s\n", mode)
			for _, e := range entries {
				state := "enabled"
				if !e.Enabled {
					state = "disabled"
				}
				fmt.Fprintf(inv.stdout, "%s\t%s\t%s\t%s\n", e.Kind, e.Address, state, e.Label)
			}
			return nil
		})
	},
}

// maxDifficulty bounds a demanded difficulty (a multiple of the network
// minimum): more would make the address unreachable in practice.
const maxDifficulty = 1e6

// parseDifficulty reads a multiple of the network minimum (at least 1,
// fractions allowed as in PyBitmessage's settings) and returns the value
// it gives for a minimum of least.
func parseDifficulty(s string, least uint64) (uint64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 1 || f > maxDifficulty {
		return 0, fmt.Errorf("%w: difficulty %q is not a number from 1 to %g (a multiple of the network minimum)", errUsage, s, float64(maxDifficulty))
	}
	return uint64(f * float64(least)), nil
}

// difficultyOf shows a demanded value as a multiple of the minimum.
func difficultyOf(v, least uint64) string {
	least = max(least, 1)
	return strconv.FormatFloat(float64(max(v, least))/float64(least), 'g', 6, 64)
}

var cmdAddressSet = &command{
	name: "address set",
	args: "--user NAME BM-ADDRESS difficulty N [small N] | BM-ADDRESS mailinglist on|off [--name TEXT]",
	summary: "Change a setting of one of a user's addresses. difficulty N [small N]: the proof of work the address demands of " +
		"senders, as multiples of the network minimum, like PyBitmessage's total difficulty and small message difficulty " +
		"(small keeps its value when not given); the address's pubkey is published again with the new demand at once, and " +
		"mail with less proof of work is dropped unless the sender is an alias or on the whitelist. mailinglist on|off: " +
		"PyBitmessage's mailing list: every message the address receives is also broadcast from it to its subscribers, " +
		"subject prefixed with [NAME] (--name, default the address's label) and the body headed with the time and the " +
		"original sender; the owner gets the message as usual.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the owner")
		name := inv.fs.String("name", "", "the mailing list's `NAME`, put in brackets before the subject of what it broadcasts")
		cfg, err := inv.parse(3, 5)
		if err != nil {
			return err
		}
		addr, err := address.Decode(inv.args[0])
		if err != nil {
			return err
		}
		setting, rest := inv.args[1], inv.args[2:]
		net := cfg.NetworkParams()
		var set func(st mailmap.Store, u mailmap.User, id mailmap.Identity) (string, error)
		switch setting {
		case "difficulty":
			ntpbArg, smallArg := rest[0], ""
			switch {
			case len(rest) == 3 && rest[1] == "small":
				smallArg = rest[2]
			case len(rest) != 1:
				return fmt.Errorf("%w: difficulty N [small N]", errUsage)
			}
			ntpb, err := parseDifficulty(ntpbArg, net.NonceTrialsPerByte)
			if err != nil {
				return err
			}
			var extra uint64
			if smallArg != "" {
				if extra, err = parseDifficulty(smallArg, net.ExtraBytes); err != nil {
					return err
				}
			}
			set = func(st mailmap.Store, u mailmap.User, id mailmap.Identity) (string, error) {
				if smallArg == "" {
					extra = id.ExtraBytes
				}
				if err := st.SetIdentityDifficulty(ctx, u.ID, id.ID, ntpb, extra); err != nil {
					return "", fmt.Errorf("set difficulty: %w", err)
				}
				return fmt.Sprintf("difficulty %s small %s (the pubkey is published again when the server runs)",
					difficultyOf(ntpb, net.NonceTrialsPerByte), difficultyOf(extra, net.ExtraBytes)), nil
			}
		case "mailinglist":
			if len(rest) != 1 || rest[0] != "on" && rest[0] != "off" {
				return fmt.Errorf("%w: mailinglist on|off", errUsage)
			}
			on := rest[0] == "on"
			if strings.ContainsFunc(*name, unicode.IsControl) || !utf8.ValidString(*name) || len(*name) > 200 {
				return fmt.Errorf("%w: --name must be one line of text of at most 200 bytes", errUsage)
			}
			set = func(st mailmap.Store, u mailmap.User, id mailmap.Identity) (string, error) {
				listName := strings.TrimSpace(*name)
				if !on {
					listName = ""
				} else if listName == "" {
					listName = id.Label
				}
				if err := st.SetMailingList(ctx, u.ID, id.ID, on, listName); err != nil {
					return "", fmt.Errorf("set mailing list: %w", err)
				}
				if !on {
					return "mailing list off", nil
				}
				return fmt.Sprintf("mailing list [%s]", listName), nil
			}
		default:
			return fmt.Errorf("%w: unknown setting %q (difficulty or mailinglist)", errUsage, setting)
		}
		if setting != "mailinglist" && *name != "" {
			return fmt.Errorf("%w: --name goes with mailinglist", errUsage)
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			ids, err := st.Identities(ctx, u.ID)
			if err != nil {
				return fmt.Errorf("list addresses: %w", err)
			}
			for _, id := range ids {
				if id.Address != addr.String() {
					continue
				}
				if id.Kind == mailmap.KindChan {
					return fmt.Errorf("%s is a chan: it demands the network minimum and cannot be a mailing list", addr)
				}
				what, err := set(st, u, id)
				if err != nil {
					return err
				}
				fmt.Fprintf(inv.stdout, "%s: %s\n", addr, what)
				return nil
			}
			return fmt.Errorf("%s has no address %s", u.Name, addr)
		})
	},
}

// addressSettings is what address list shows of an address's settings.
func addressSettings(id mailmap.Identity, net *params.Network) string {
	if id.Kind == mailmap.KindChan {
		return ""
	}
	s := fmt.Sprintf("\tdifficulty %s small %s", difficultyOf(id.NonceTrialsPerByte, net.NonceTrialsPerByte),
		difficultyOf(id.ExtraBytes, net.ExtraBytes))
	if id.MailingList {
		s += "\tmailinglist [" + id.MailingListName + "]"
	}
	return s
}
