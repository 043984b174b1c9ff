package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

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
			// docs/protocol.md §7.5: demand the network minimum difficulty.
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
	name: "address list",
	args: "--user NAME",
	summary: "List a user's Bitmessage addresses and chans: address, mail address, kind, label and, for addresses, " +
		"the demanded difficulty (multiples of the network minimum) and the mailing list if it is one (tab-separated).",
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
				fmt.Fprintf(inv.stdout, "%s\t%s\t%s\t%s%s\n", id.Address, gateway.BMToMail(id.Address, cfg.Domain), id.Kind, id.Label,
					addressSettings(id, cfg.NetworkParams()))
			}
			return nil
		})
	},
}

var cmdChanJoin = &command{
	name: "chan join",
	args: "--user NAME [--name LABEL] [--passphrase-file FILE] [PASSPHRASE] [BM-ADDRESS]",
	summary: "Join (or create) the chan whose passphrase is PASSPHRASE and print its address. Without PASSPHRASE " +
		"it is the first line of --passphrase-file, or of standard input (asked without echo on a terminal), so it stays " +
		"out of the shell history. The passphrase derives the chan's keys: it is stored only encrypted, like them. " +
		"The chan is named LABEL, default chan-<start of its address>; its posts are filed in the folder Chans/<LABEL>. " +
		"With BM-ADDRESS, check that the passphrase gives that address, as PyBitmessage's join does.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the user joining")
		label := inv.fs.String("name", "", "the chan's `LABEL`, shown by address list, in the To: of its posts and as its folder "+
			"Chans/<LABEL> (default: chan- and the start of its address); never the passphrase")
		ppFile := inv.fs.String("passphrase-file", "", "read the passphrase from the first line of `FILE` (- for standard input); "+
			"the arguments are then [BM-ADDRESS]")
		cfg, err := inv.parse(0, 2)
		if err != nil {
			return err
		}
		var passphrase, addrArg string
		switch {
		case *ppFile != "":
			if len(inv.args) > 1 {
				return fmt.Errorf("%w: with --passphrase-file the only argument is BM-ADDRESS", errUsage)
			}
			if len(inv.args) == 1 {
				addrArg = inv.args[0]
			}
			if passphrase, err = inv.readPassphrase(*ppFile, false); err != nil {
				return err
			}
		case len(inv.args) == 0:
			// On a terminal, ask twice: a typo would join another chan.
			if passphrase, err = inv.readPassphrase("-", true); err != nil {
				return err
			}
		default:
			passphrase = inv.args[0]
			if len(inv.args) == 2 {
				addrArg = inv.args[1]
			}
		}
		if passphrase == "" {
			return fmt.Errorf("%w: empty chan passphrase", errUsage)
		}
		var id *identity.Identity
		if addrArg != "" {
			addr, err := address.Decode(addrArg)
			if err != nil {
				return err
			}
			if id, err = identity.JoinChan(passphrase, addr); errors.Is(err, identity.ErrChanAddress) {
				// JoinChan's message quotes the passphrase: keep it off the screen and logs.
				return fmt.Errorf("join chan: %w %s", identity.ErrChanAddress, addr)
			} else if err != nil {
				return err
			}
		} else if id, err = identity.Chan(passphrase); err != nil {
			return fmt.Errorf("derive chan: %w", err)
		}
		chanAddr := id.Address.String()
		name := strings.TrimSpace(*label)
		switch {
		case *label != "" && name == "":
			return fmt.Errorf("%w: empty --name", errUsage)
		case name == "":
			name = mailmap.DefaultChanName(chanAddr)
		case len(name) > maxChanName || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
			return fmt.Errorf("%w: --name must be one line of text of at most %d bytes", errUsage, maxChanName)
		case name == strings.TrimSpace(passphrase):
			return fmt.Errorf("%w: --name must not be the passphrase: the name is stored and shown in clear", errUsage)
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			ids, err := st.Identities(ctx, u.ID)
			if err != nil {
				return fmt.Errorf("list addresses: %w", err)
			}
			folder := gateway.ChanFolder(name, chanAddr)
			for _, other := range ids {
				if other.Address == chanAddr {
					return fmt.Errorf("%s has already joined chan %s (named %q)", u.Name, chanAddr, other.Label)
				}
			}
			for _, other := range ids {
				if other.Kind == mailmap.KindChan && (other.Label == name || gateway.ChanFolder(other.Label, other.Address) == folder) {
					return fmt.Errorf("%s already has a chan named %q (%s): choose another --name", u.Name, other.Label, other.Address)
				}
			}
			net := cfg.NetworkParams()
			m, err := st.AddIdentity(ctx, mailmap.Identity{
				UserID:         u.ID,
				Address:        chanAddr,
				Label:          name,
				Kind:           mailmap.KindChan,
				SigningKey:     id.Signing.Serialize(),
				EncryptionKey:  id.Encryption.Serialize(),
				ChanPassphrase: passphrase,
				// docs/protocol.md §7.6: a chan's pubkey is never published.
				PublishPubkey:      false,
				NonceTrialsPerByte: net.NonceTrialsPerByte,
				ExtraBytes:         net.ExtraBytes,
			})
			if errors.Is(err, mailmap.ErrExists) {
				// Several users may join one chan, each once.
				return fmt.Errorf("%s has already joined chan %s", u.Name, chanAddr)
			}
			if err != nil {
				return fmt.Errorf("store chan: %w", err)
			}
			if err := gateway.EnsureFolder(ctx, st, u.ID, folder); err != nil {
				return err
			}
			fmt.Fprintln(inv.stdout, m.Address)
			return nil
		})
	},
}

// maxChanName bounds a chan's name (bytes); its folder keeps 200 of them.
const maxChanName = 200

// readPassphrase reads a chan passphrase: the first line of file, or with
// file "-" of standard input, asked without echo on a terminal (twice with
// repeat).
func (c *cli) readPassphrase(file string, repeat bool) (string, error) {
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("open passphrase file: %w", err)
		}
		defer f.Close()
		return readSecretLine(f, "chan passphrase")
	}
	if f, ok := c.stdin.(*os.File); ok && isTerminal(f) {
		return c.promptSecret(f, "chan passphrase", repeat)
	}
	return readSecretLine(c.stdin, "chan passphrase")
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
			if err := gateway.EnsureFolder(ctx, st, u.ID, folder); err != nil {
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
