package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, environ: os.Environ}, os.Args[1:])
	stop()
	os.Exit(code)
}

// cli is the process's outside world, replaced in tests.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	environ        func() []string // for the warning about unknown BMGATE_* variables; nil: none
}

// command is one subcommand. run declares its own flags on inv.fs, then calls
// inv.parse, which adds the configuration flags, parses, and loads the
// configuration.
type command struct {
	name    string // "user add"
	args    string // synopsis of the positional arguments and own flags
	summary string
	serve   bool // offers every configuration flag, not only the common ones
	run     func(ctx context.Context, inv *invocation) error
}

// commands is the table of subcommands. Files that hold a command's code
// register it here from init (serve.go, sendmail.go).
var commands = []*command{
	cmdUserAdd, cmdUserList, cmdUserPasswd, cmdUserDel, cmdUserSet,
	cmdAddressNew, cmdAddressList, cmdAddressSet, cmdChanJoin, cmdSubscribe, cmdAliasAdd, cmdAliasList, cmdAliasDel,
	cmdListMode, cmdListAdd, cmdListDel, cmdListEnable, cmdListDisable, cmdListShow,
	cmdImportPyBitmessage, cmdExportKeys,
	cmdStatus, cmdOutboxList, cmdHealthcheck, cmdConfigSample, cmdConfigShow,
}

// Exit statuses: 0 success, 1 failure, 2 usage error; an error with an
// ExitCode() int method chooses its own (sendmail's sysexits codes).

// errUsage marks an error in how the command was called (exit status 2).
var errUsage = errors.New("usage")

// errHelp is returned after --help printed the usage (exit status 0).
var errHelp = errors.New("help shown")

// run executes one command line and returns the exit status.
func run(ctx context.Context, c *cli, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 {
			if cmd, _ := lookup(args[1:]); cmd != nil {
				// The command declares its own flags, then prints them.
				if err := cmd.run(ctx, newInvocation(c, cmd, []string{"--help"})); !errors.Is(err, errHelp) {
					return 1
				}
				return 0
			}
		}
		printCommands(c.stdout, "")
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, rest := lookup(args)
	if cmd == nil {
		if groupExists(args[0]) {
			fmt.Fprintf(c.stderr, "bmgate %s: want one of these subcommands:\n", args[0])
			printCommands(c.stderr, args[0])
		} else {
			fmt.Fprintf(c.stderr, "bmgate: unknown command %q (run bmgate help)\n", args[0])
		}
		return 2
	}
	inv := newInvocation(c, cmd, rest)
	err := cmd.run(ctx, inv)
	var coded interface{ ExitCode() int }
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.As(err, &coded):
		fmt.Fprintf(c.stderr, "bmgate %s: %v\n", cmd.name, err)
		return coded.ExitCode()
	case errors.Is(err, errUsage):
		fmt.Fprintf(c.stderr, "bmgate %s: %v\nRun bmgate %s --help for usage.\n", cmd.name, err, cmd.name)
		return 2
	default:
		fmt.Fprintf(c.stderr, "bmgate %s: %v\n", cmd.name, err)
		return 1
	}
}

// lookup finds the command named by the first one or two arguments.
func lookup(args []string) (*command, []string) {
	if len(args) >= 2 {
		if cmd := findCommand(args[0] + " " + args[1]); cmd != nil {
			return cmd, args[2:]
		}
	}
	if cmd := findCommand(args[0]); cmd != nil {
		return cmd, args[1:]
	}
	return nil, nil
}

func findCommand(name string) *command {
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd
		}
	}
	return nil
}

func groupExists(group string) bool {
	return slices.ContainsFunc(commands, func(cmd *command) bool { return strings.HasPrefix(cmd.name, group+" ") })
}

// printCommands lists the commands, or those of one group.
func printCommands(w io.Writer, group string) {
	sorted := slices.Clone(commands)
	slices.SortFunc(sorted, func(a, b *command) int { return strings.Compare(a.name, b.name) })
	if group == "" {
		fmt.Fprint(w, "bmgate puts ordinary email in front of the Bitmessage network.\n\nUsage: bmgate COMMAND [flags] [arguments]\n\nCommands:\n")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, cmd := range sorted {
		if group == "" || strings.HasPrefix(cmd.name, group+" ") {
			fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.summary)
		}
	}
	tw.Flush()
	if group == "" {
		fmt.Fprint(w, "\nRun bmgate COMMAND --help for a command's flags. Every command reads the same\n"+
			"configuration: --config FILE (or BMGATE_CONFIG), BMGATE_* variables, flags.\n")
	}
}

// invocation is one run of a command: its flag set and arguments.
type invocation struct {
	*cli
	cmd  *command
	fs   *flag.FlagSet
	raw  []string
	args []string // positional arguments, after parse
}

func newInvocation(c *cli, cmd *command, raw []string) *invocation {
	fs := flag.NewFlagSet("bmgate "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &invocation{cli: c, cmd: cmd, fs: fs, raw: raw}
}

// parse adds the configuration flags, parses the command line and loads the
// configuration.
func (inv *invocation) parse(minArgs, maxArgs int) (Config, error) {
	cf := bindConfigFlags(inv.fs, inv.cmd.serve)
	if err := inv.parseFlags(minArgs, maxArgs); err != nil {
		return Config{}, err
	}
	inv.warnUnknownEnv()
	return cf.load(inv.getenv)
}

// warnUnknownEnv warns about BMGATE_* variables that set nothing (a typo
// would otherwise be ignored without a word).
func (inv *invocation) warnUnknownEnv() {
	if inv.environ == nil {
		return
	}
	for _, name := range unknownEnv(inv.environ()) {
		fmt.Fprintf(inv.stderr, "bmgate: warning: %s is not a bmgate setting and is ignored (bmgate config sample lists them)\n", name)
	}
}

// parseFlags parses the command line (flags may follow positional
// arguments; "--" ends the flags) and checks the number of positional
// arguments (maxArgs < 0: no limit).
func (inv *invocation) parseFlags(minArgs, maxArgs int) error {
	args := inv.raw
	for {
		if err := inv.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				inv.printUsage(inv.stdout)
				return errHelp
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		rest := inv.fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			inv.args = append(inv.args, rest...)
			break
		}
		inv.args = append(inv.args, rest[0])
		args = rest[1:]
	}
	switch {
	case len(inv.args) < minArgs:
		return fmt.Errorf("%w: missing arguments (want %s)", errUsage, inv.cmd.args)
	case maxArgs >= 0 && len(inv.args) > maxArgs:
		return fmt.Errorf("%w: too many arguments", errUsage)
	}
	return nil
}

// printUsage writes the command's synopsis, summary and flags: its own
// first, then the configuration flags with the key and variable they set.
func (inv *invocation) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: bmgate %s [flags] %s\n\n%s\n", inv.cmd.name, inv.cmd.args, inv.cmd.summary)
	var own, conf []*flag.Flag
	inv.fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(*flagValue); ok || f.Name == "config" {
			conf = append(conf, f)
		} else {
			own = append(own, f)
		}
	})
	section := func(title string, flags []*flag.Flag) {
		if len(flags) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, f := range flags {
			arg, usage := flag.UnquoteUsage(f)
			if fv, ok := f.Value.(*flagValue); ok {
				arg = fv.f.arg
				usage += fmt.Sprintf(" [%s, %s]", fv.f.key, fv.f.Env())
			}
			if arg != "" {
				arg = " " + arg
			}
			fmt.Fprintf(w, "  --%s%s\n      %s", f.Name, arg, usage)
			if f.DefValue != "" && f.DefValue != "false" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		}
	}
	section("Flags", own)
	section("Configuration", conf)
}
