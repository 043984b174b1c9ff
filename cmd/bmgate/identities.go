package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
)

var cmdAddressNew = &command{
	name: "address new",
	args: "--user NAME [--label TEXT]",
	summary: "Create a random Bitmessage address (version 4, stream 1) for a user and print it. " +
		"Its public key is published when the server runs, so others can write to it.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the owner")
		label := inv.fs.String("label", "", "a label for the address, shown by address list")
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			id, err := identity.NewRandom(1, nil)
			if err != nil {
				return fmt.Errorf("create address: %w", err)
			}
			// SPEC.md §7.5: demand the network minimum difficulty.
			net := cfg.NetworkParams()
			m, err := st.AddIdentity(ctx, mailmap.Identity{
				UserID:             u.ID,
				Address:            id.Address.String(),
				Label:              *label,
				Kind:               mailmap.KindNormal,
				SigningKey:         id.Signing.Serialize(),
				EncryptionKey:      id.Encryption.Serialize(),
				PublishPubkey:      true,
				NonceTrialsPerByte: net.NonceTrialsPerByte,
				ExtraBytes:         net.ExtraBytes,
			})
			if err != nil {
				return fmt.Errorf("store address: %w", err)
			}
			fmt.Fprintln(inv.stdout, m.Address)
			return nil
		})
	},
}

var cmdAddressList = &command{
	name:    "address list",
	args:    "--user NAME",
	summary: "List a user's Bitmessage addresses and chans: address, mail address, kind, label (tab-separated).",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the owner")
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			ids, err := st.Identities(ctx, u.ID)
			if err != nil {
				return fmt.Errorf("list addresses: %w", err)
			}
			for _, id := range ids {
				fmt.Fprintf(inv.stdout, "%s\t%s\t%s\t%s\n", id.Address, gateway.BMToMail(id.Address, cfg.Domain), id.Kind, id.Label)
			}
			return nil
		})
	},
}

var cmdChanJoin = &command{
	name: "chan join",
	args: "--user NAME PASSPHRASE [BM-ADDRESS]",
	summary: "Join (or create) the chan whose name is PASSPHRASE and print its address. With BM-ADDRESS, " +
		"check that the name gives that address, as PyBitmessage's join does. The chan's posts are filed in the folder Chans/<name>.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the user joining")
		cfg, err := inv.parse(1, 2)
		if err != nil {
			return err
		}
		name := inv.args[0]
		if name == "" {
			return fmt.Errorf("%w: empty chan name", errUsage)
		}
		var id *identity.Identity
		if len(inv.args) == 2 {
			addr, err := address.Decode(inv.args[1])
			if err != nil {
				return err
			}
			if id, err = identity.JoinChan(name, addr); err != nil {
				return err
			}
		} else if id, err = identity.Chan(name); err != nil {
			return fmt.Errorf("derive chan: %w", err)
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			net := cfg.NetworkParams()
			label := "[chan] " + name
			m, err := st.AddIdentity(ctx, mailmap.Identity{
				UserID:        u.ID,
				Address:       id.Address.String(),
				Label:         label,
				Kind:          mailmap.KindChan,
				SigningKey:    id.Signing.Serialize(),
				EncryptionKey: id.Encryption.Serialize(),
				// SPEC.md §7.6: a chan's pubkey is never published.
				PublishPubkey:      false,
				NonceTrialsPerByte: net.NonceTrialsPerByte,
				ExtraBytes:         net.ExtraBytes,
			})
			if errors.Is(err, mailmap.ErrExists) {
				// Several users may join one chan, each once.
				return fmt.Errorf("%s has already joined chan %s (%s)", u.Name, name, id.Address)
			}
			if err != nil {
				return fmt.Errorf("store chan: %w", err)
			}
			if err := ensureFolder(ctx, st, u.ID, gateway.ChanFolder(label, m.Address)); err != nil {
				return err
			}
			fmt.Fprintln(inv.stdout, m.Address)
			return nil
		})
	},
}

var cmdSubscribe = &command{
	name: "subscribe",
	args: "--user NAME [--label TEXT] BM-ADDRESS",
	summary: "Follow the broadcasts of a Bitmessage address. They are filed in the folder Subscriptions/<label>, " +
		"or Subscriptions/<address> without a label.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the subscriber")
		label := inv.fs.String("label", "", "a name for the subscription and its folder")
		cfg, err := inv.parse(1, 1)
		if err != nil {
			return err
		}
		addr, err := address.Decode(inv.args[0])
		if err != nil {
			return err
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			s, err := st.AddSubscription(ctx, mailmap.Subscription{UserID: u.ID, Address: addr.String(), Label: *label})
			if errors.Is(err, mailmap.ErrExists) {
				return fmt.Errorf("%s already follows %s", u.Name, addr)
			}
			if err != nil {
				return fmt.Errorf("store subscription: %w", err)
			}
			folder := gateway.SubscriptionFolder(s.Label, s.Address)
			if err := ensureFolder(ctx, st, u.ID, folder); err != nil {
				return err
			}
			fmt.Fprintf(inv.stdout, "%s follows %s; broadcasts go to %s\n", u.Name, s.Address, folder)
			return nil
		})
	},
}

// withOwner opens the store, finds the user given with --user and runs fn.
func withOwner(ctx context.Context, inv *invocation, cfg Config, name string, fn func(mailmap.Store, mailmap.User) error) error {
	if name == "" {
		return fmt.Errorf("%w: --user is required", errUsage)
	}
	st, err := inv.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	u, err := userByName(ctx, st, name)
	if err != nil {
		return err
	}
	return fn(st, u)
}

// ensureFolder creates a folder (and its parent) if needed and subscribes
// both, so that clients showing only subscribed folders, as Thunderbird
// does by default, list it.
func ensureFolder(ctx context.Context, st mailmap.Store, userID int64, name string) error {
	if _, err := st.CreateMailbox(ctx, userID, name, ""); err != nil && !errors.Is(err, mailmap.ErrExists) {
		return fmt.Errorf("create folder %s: %w", name, err)
	}
	for n := name; ; {
		if err := st.SetSubscribed(ctx, userID, n, true); err != nil {
			return fmt.Errorf("subscribe folder %s: %w", n, err)
		}
		i := strings.LastIndexByte(n, '/')
		if i < 0 {
			return nil
		}
		n = n[:i]
	}
}
