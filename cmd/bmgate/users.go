package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/bmgate/bmgate/mailmap"
)

var cmdUserAdd = &command{
	name:    "user add",
	args:    "NAME",
	summary: "Create a mail account. The password is the first line of --password-file, or one line of standard input (asked twice, not echoed, on a terminal).",
	run: func(ctx context.Context, inv *invocation) error {
		pwFile := inv.fs.String("password-file", "", "read the password from the first line of `FILE`")
		cfg, err := inv.parse(1, 1)
		if err != nil {
			return err
		}
		name := inv.args[0]
		pw, err := inv.readPassword(*pwFile)
		if err != nil {
			return err
		}
		st, err := inv.openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		u, err := st.CreateUser(ctx, name, pw)
		switch {
		case errors.Is(err, mailmap.ErrExists):
			return fmt.Errorf("user %q already exists", name)
		case errors.Is(err, mailmap.ErrInvalidName):
			return fmt.Errorf("invalid user name %q", name)
		case err != nil:
			return fmt.Errorf("create user: %w", err)
		}
		fmt.Fprintf(inv.stdout, "created user %s; give it an address with: bmgate address new --user %s\n", u.Name, u.Name)
		return nil
	},
}

var cmdUserList = &command{
	name:    "user list",
	summary: "List the accounts: name, addresses, delivery reports, state, quota and mail stored, creation time (tab-separated).",
	run: func(ctx context.Context, inv *invocation) error {
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		st, err := inv.openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		users, err := st.ListUsers(ctx)
		if err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		for _, u := range users {
			ids, err := st.Identities(ctx, u.ID)
			if err != nil {
				return fmt.Errorf("list addresses of %s: %w", u.Name, err)
			}
			state := "enabled"
			if u.Disabled {
				state = "disabled"
			}
			quota := "quota none"
			if u.QuotaBytes > 0 {
				quota = "quota " + formatSize(u.QuotaBytes)
			}
			rate := "send-rate none"
			if u.SendRate > 0 {
				rate = fmt.Sprintf("send-rate %d/h", u.SendRate)
			}
			fmt.Fprintf(inv.stdout, "%s\t%d addresses\tdelivery-reports %s\t%s\t%s, %s used\t%s\t%s\n",
				u.Name, len(ids), onOff(u.DeliveryReports), state, quota, formatSize(u.UsedBytes), rate,
				u.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
		}
		return nil
	},
}

var cmdUserPasswd = &command{
	name:    "user passwd",
	args:    "NAME",
	summary: "Set an account's password, read like user add reads it.",
	run: func(ctx context.Context, inv *invocation) error {
		pwFile := inv.fs.String("password-file", "", "read the password from the first line of `FILE`")
		cfg, err := inv.parse(1, 1)
		if err != nil {
			return err
		}
		return withUser(ctx, inv, cfg, func(st mailmap.Store, u mailmap.User) error {
			pw, err := inv.readPassword(*pwFile)
			if err != nil {
				return err
			}
			if err := st.SetPassword(ctx, u.ID, pw); err != nil {
				return fmt.Errorf("set password: %w", err)
			}
			fmt.Fprintf(inv.stdout, "password of %s changed\n", u.Name)
			return nil
		})
	},
}

var cmdUserDel = &command{
	name: "user del",
	args: "[--yes] NAME",
	summary: "Delete an account with its addresses, mail and queued messages. The addresses' private keys are gone for good. " +
		"Asks for the user name again (on standard input) unless --yes is given.",
	run: func(ctx context.Context, inv *invocation) error {
		yes := inv.fs.Bool("yes", false, "delete without asking")
		cfg, err := inv.parse(1, 1)
		if err != nil {
			return err
		}
		return withUser(ctx, inv, cfg, func(st mailmap.Store, u mailmap.User) error {
			if !*yes {
				ids, err := st.Identities(ctx, u.ID)
				if err != nil {
					return fmt.Errorf("list addresses: %w", err)
				}
				fmt.Fprintf(inv.stderr, "Delete user %s, its %d address(es) with their private keys, and all its mail? "+
					"This cannot be undone.\nType the user name to confirm: ", u.Name, len(ids))
				line, _ := bufio.NewReader(inv.stdin).ReadString('\n')
				if strings.TrimSpace(line) != u.Name {
					fmt.Fprintln(inv.stderr)
					return fmt.Errorf("not confirmed, nothing deleted (give --yes to delete without asking)")
				}
			}
			if err := st.DeleteUser(ctx, u.ID); err != nil {
				return fmt.Errorf("delete user: %w", err)
			}
			fmt.Fprintf(inv.stdout, "deleted user %s\n", u.Name)
			return nil
		})
	},
}

var cmdUserSet = &command{
	name: "user set",
	args: "NAME SETTING VALUE",
	summary: "Change an account setting. delivery-reports on|off: put a delivery report in INBOX for every acknowledged message, " +
		"even when the mail client did not ask for one. disabled on|off: refuse the account's logins, end its open SMTP and IMAP " +
		"sessions at their next command (an IMAP IDLE within 15 s) and hold its queued mail, unsent, until it is enabled again. quota SIZE|none: the most " +
		"mail the account may store (100M, 2G, 512K or bytes); over it, IMAP APPEND gets [OVERQUOTA], SMTP 552, and arriving " +
		"Bitmessage mail is held (not acknowledged, not lost) until there is room or it expires. send-rate N|none: the most " +
		"messages (one per recipient) the account may queue in an hour; more get a temporary SMTP failure (450 4.7.1).",
	run: func(ctx context.Context, inv *invocation) error {
		cfg, err := inv.parse(3, 3)
		if err != nil {
			return err
		}
		setting, value := inv.args[1], inv.args[2]
		onOffValue := func() (bool, error) {
			switch value {
			case "on":
				return true, nil
			case "off":
				return false, nil
			}
			return false, fmt.Errorf("%w: value must be on or off, not %q", errUsage, value)
		}
		var set func(st mailmap.Store, id int64) error
		switch setting {
		case "delivery-reports", "disabled":
			on, err := onOffValue()
			if err != nil {
				return err
			}
			set = func(st mailmap.Store, id int64) error { return st.SetDeliveryReports(ctx, id, on) }
			if setting == "disabled" {
				set = func(st mailmap.Store, id int64) error { return st.SetDisabled(ctx, id, on) }
			}
		case "quota":
			n, err := parseSize(value)
			if err != nil {
				return fmt.Errorf("%w: quota: %v", errUsage, err)
			}
			set = func(st mailmap.Store, id int64) error { return st.SetQuota(ctx, id, n) }
		case "send-rate":
			n, err := strconv.ParseInt(strings.TrimSuffix(value, "/h"), 10, 64)
			if value == "none" {
				n, err = 0, nil
			}
			if err != nil || n < 0 {
				return fmt.Errorf("%w: send-rate: %q is not a number of messages an hour (or none)", errUsage, value)
			}
			set = func(st mailmap.Store, id int64) error { return st.SetSendRate(ctx, id, n) }
		default:
			return fmt.Errorf("%w: unknown setting %q (delivery-reports, disabled, quota or send-rate)", errUsage, setting)
		}
		return withUser(ctx, inv, cfg, func(st mailmap.Store, u mailmap.User) error {
			if err := set(st, u.ID); err != nil {
				return fmt.Errorf("set %s: %w", setting, err)
			}
			fmt.Fprintf(inv.stdout, "%s of %s is %s\n", setting, u.Name, value)
			return nil
		})
	},
}

// withUser opens the store, finds the user named by the first argument and
// runs fn.
func withUser(ctx context.Context, inv *invocation, cfg Config, fn func(mailmap.Store, mailmap.User) error) error {
	st, err := inv.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	u, err := userByName(ctx, st, inv.args[0])
	if err != nil {
		return err
	}
	return fn(st, u)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// parseSize reads a size: bytes, or a number with K, M, G or T (powers of
// 1024, an optional trailing B, any case); 0, none and unlimited are 0.
func parseSize(v string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(v))
	switch t {
	case "NONE", "UNLIMITED", "0":
		return 0, nil
	}
	t = strings.TrimSuffix(t, "B")
	mult := int64(1)
	for i, unit := range []string{"K", "M", "G", "T"} {
		if strings.HasSuffix(t, unit) {
			t, mult = strings.TrimSuffix(t, unit), int64(1)<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size (like 100M, 2G or a number of bytes; none for no limit)", v)
	}
	return n * mult, nil
}

// formatSize writes a size the way parseSize reads it, rounded down.
func formatSize(n int64) string {
	for i, unit := range []string{"T", "G", "M", "K"} {
		if d := int64(1) << (10 * (4 - i)); n >= d {
			if n%d == 0 {
				return fmt.Sprintf("%d%s", n/d, unit)
			}
			return fmt.Sprintf("%.1f%s", float64(n)/float64(d), unit)
		}
	}
	return fmt.Sprintf("%dB", n)
}
