package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// sendmailOpts is what a sendmail(8) command line asks for.
//
// The options are parsed by hand rather than with the flag package (which
// knows only -name and --name, no combined letters, no attached values) or
// a getopt library: sendmail's syntax has attached-only option arguments
// (-oem, -odi, -B8BITMIME, -bm) that getopt libraries model only as generic
// "takes a value" letters anyway, and the configuration flags (--db,
// --data, --config, …) must stay on the one stdlib flag set every other
// subcommand uses. The letter table below is the whole of sendmail 8's,
// Postfix's and Exim's documented option set, so a script written for any
// of them is accepted.
type sendmailOpts struct {
	from      string   // -f / -r: envelope sender
	fullName  string   // -F: sender's full name, for a From header we write
	useHdrs   bool     // -t
	notify    string   // -N
	ret       string   // -R: RFC 3461 RET
	envID     string   // -V: RFC 3461 ENVID
	rcpts     []string // positional arguments
	longFlags []string // --name[=value] configuration flags, for the flag set
	help      bool
}

// sendmailValueOpts are the letters that take a value, attached (-fuser)
// or as the next argument (-f user). Every other known letter is a switch.
const sendmailValueOpts = "ABCFLMNOQRVXbdefhoprq"

// sendmailSwitchOpts are the letters without a value, all accepted: -t and
// -i (and -oi) matter, the rest ask for behaviour that does not apply to a
// gateway whose server does the delivery (verbose, no aliasing, 8-bit
// flags, …) and are ignored.
const sendmailSwitchOpts = "tinvmsGUcx8"

// parseSendmailArgs reads a sendmail command line. fs holds the
// configuration flags: a --name (or --name=value) argument is one of them,
// collected for fs.Parse; a --name without "=" takes the next argument as
// its value unless the flag is a boolean. "--" ends the options; after it
// every argument is a recipient.
func parseSendmailArgs(args []string, fs *flag.FlagSet) (sendmailOpts, error) {
	var o sendmailOpts
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			o.rcpts = append(o.rcpts, args[i+1:]...)
			return o, nil
		case a == "--help" || a == "-help":
			o.help = true
			continue
		case strings.HasPrefix(a, "--"):
			name, _, hasValue := strings.Cut(a[2:], "=")
			f := fs.Lookup(name)
			if f == nil {
				return o, fmt.Errorf("unknown option %s", a)
			}
			o.longFlags = append(o.longFlags, a)
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && bf.IsBoolFlag()) {
				if i+1 >= len(args) {
					return o, fmt.Errorf("option %s needs a value", a)
				}
				i++
				o.longFlags = append(o.longFlags, args[i])
			}
			continue
		case len(a) < 2 || a[0] != '-':
			o.rcpts = append(o.rcpts, a) // "-" alone is a recipient too, as in getopt
			continue
		}
		// One or more letters: switches may be combined (-ti); a letter
		// that takes a value takes the rest of the argument, or the next
		// argument when nothing follows it.
		for j := 1; j < len(a); j++ {
			c := a[j]
			switch {
			case strings.IndexByte(sendmailSwitchOpts, c) >= 0:
				if c == 't' {
					o.useHdrs = true
				}
				continue
			case c == 'I':
				return o, fmt.Errorf("-I: %w", errSendmailMode)
			case strings.IndexByte(sendmailValueOpts, c) < 0:
				return o, fmt.Errorf("unknown option -%c", c)
			}
			val := a[j+1:]
			if val == "" && c != 'q' { // -q alone has no value (run the queue)
				if i+1 >= len(args) {
					return o, fmt.Errorf("option -%c needs a value", c)
				}
				i++
				val = args[i]
			}
			if err := o.set(c, val); err != nil {
				return o, err
			}
			break
		}
	}
	return o, nil
}

// errSendmailMode is a sendmail mode (-b…, -q, -I) bmgate does not offer:
// it only queues one message; the running server does the rest.
var errSendmailMode = errors.New("bmgate sendmail only queues a message (-bm): the running server sends the queue, and there is no alias database")

// set applies one option letter with its value.
func (o *sendmailOpts) set(c byte, val string) error {
	switch c {
	case 'f', 'r':
		o.from = val
	case 'F':
		o.fullName = val
	case 'N':
		o.notify = val
	case 'R':
		o.ret = strings.ToUpper(val)
		if o.ret != "FULL" && o.ret != "HDRS" {
			return fmt.Errorf("-R wants full or hdrs, not %q", val)
		}
	case 'V':
		o.envID = val
	case 'b':
		if val != "m" {
			return fmt.Errorf("-b%s: %w", val, errSendmailMode)
		}
	case 'q':
		return fmt.Errorf("-q%s: %w", val, errSendmailMode)
	}
	// -A -B -C -L -M -O -Q -X -d -e -h -o -p: delivery, logging, queue and
	// body-type settings of a local MTA (-oi, -oem, -odi, -B8BITMIME, …),
	// which do not apply here. -oi is the same as -i, which bmgate always
	// does: a lone dot never ends the message read from standard input.
	return nil
}
