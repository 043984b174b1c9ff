package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/mailmap"
)

// aliasOf makes the stored form of an alias: LABEL@domain, lower-cased.
// A label may be given with the domain; another domain is refused, since
// bmgate delivers only to its own.
func aliasOf(label, domain string) (string, error) {
	label = strings.TrimSpace(label)
	local, dom, hasDomain := strings.Cut(label, "@")
	switch {
	case local == "" || strings.ContainsAny(local, " \t\r\n<>()[]\\,;:\"@"):
		return "", fmt.Errorf("%w: %q is not a usable alias (letters, digits and . _ - + before the @)", errUsage, label)
	case hasDomain && !strings.EqualFold(dom, domain):
		return "", fmt.Errorf("%w: an alias is an address at %s, not at %s", errUsage, domain, dom)
	case strings.HasPrefix(strings.ToUpper(local), "BM-"):
		return "", fmt.Errorf("%w: an alias must not look like a Bitmessage address", errUsage)
	}
	return strings.ToLower(local + "@" + domain), nil
}

var cmdAliasAdd = &command{
	name: "alias add",
	args: "--user NAME LABEL BM-ADDRESS",
	summary: "Give a Bitmessage address a name for one user: mail that user sends to LABEL@<domain> goes to BM-ADDRESS, " +
		"and mail from BM-ADDRESS skips the proof-of-work demand of the user's addresses, as for PyBitmessage's address book. " +
		"Other users' aliases are their own.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the user")
		cfg, err := inv.parse(2, 2)
		if err != nil {
			return err
		}
		alias, err := aliasOf(inv.args[0], cfg.Domain)
		if err != nil {
			return err
		}
		addr, err := address.Decode(inv.args[1])
		if err != nil {
			return err
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			_, err := st.AddContact(ctx, mailmap.Contact{UserID: u.ID, Alias: alias, Address: addr.String()})
			if errors.Is(err, mailmap.ErrExists) {
				return fmt.Errorf("%s already has the alias %s (bmgate alias del first)", u.Name, alias)
			}
			if err != nil {
				return fmt.Errorf("store alias: %w", err)
			}
			fmt.Fprintf(inv.stdout, "%s: %s → %s\n", u.Name, alias, addr)
			return nil
		})
	},
}

var cmdAliasList = &command{
	name:    "alias list",
	args:    "--user NAME",
	summary: "List a user's aliases: alias and Bitmessage address (tab-separated).",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the user")
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			cs, err := st.Contacts(ctx, u.ID)
			if err != nil {
				return fmt.Errorf("list aliases: %w", err)
			}
			for _, c := range cs {
				fmt.Fprintf(inv.stdout, "%s\t%s\n", c.Alias, c.Address)
			}
			return nil
		})
	},
}

var cmdAliasDel = &command{
	name:    "alias del",
	args:    "--user NAME LABEL",
	summary: "Remove one of a user's aliases.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the user")
		cfg, err := inv.parse(1, 1)
		if err != nil {
			return err
		}
		alias, err := aliasOf(inv.args[0], cfg.Domain)
		if err != nil {
			return err
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			err := st.DeleteContact(ctx, u.ID, alias)
			if errors.Is(err, mailmap.ErrNotFound) {
				return fmt.Errorf("%s has no alias %s", u.Name, alias)
			}
			if err != nil {
				return fmt.Errorf("delete alias: %w", err)
			}
			fmt.Fprintf(inv.stdout, "%s: removed %s\n", u.Name, alias)
			return nil
		})
	},
}
