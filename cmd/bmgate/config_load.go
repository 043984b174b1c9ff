package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// configField describes one key of Config.
type configField struct {
	key      string
	flag     string // "" when the key has no flag
	arg      string // placeholder of the flag's value
	help     string
	flagHelp string // one line for the flag's usage
	all      bool   // flag on every subcommand
	secret   string // "", "all" (hide the value) or "password" (hide a URL password)
	index    int
}

// Env returns the environment variable of the key.
func (f configField) Env() string { return "BMGATE_" + strings.ToUpper(f.key) }

var configFields = func() []configField {
	t := reflect.TypeFor[Config]()
	fields := make([]configField, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		f := configField{
			key:      sf.Tag.Get("key"),
			flag:     sf.Tag.Get("flag"),
			arg:      sf.Tag.Get("arg"),
			help:     sf.Tag.Get("help"),
			flagHelp: sf.Tag.Get("flaghelp"),
			all:      sf.Tag.Get("scope") == "all",
			secret:   sf.Tag.Get("secret"),
			index:    i,
		}
		if f.flag == "-" {
			f.flag = ""
		}
		if f.flagHelp == "" {
			f.flagHelp, _, _ = strings.Cut(f.help, ". ")
		}
		if f.arg == "" {
			switch {
			case sf.Type == durationType:
				f.arg = "DURATION"
			case sf.Type.Kind() == reflect.Int:
				f.arg = "N"
			}
		}
		fields = append(fields, f)
	}
	return fields
}()

func fieldByKey(key string) (configField, bool) {
	for _, f := range configFields {
		if f.key == key {
			return f, true
		}
	}
	return configField{}, false
}

func (c *Config) value(f configField) reflect.Value { return reflect.ValueOf(c).Elem().Field(f.index) }

var durationType = reflect.TypeFor[time.Duration]()

// setRaw sets a field from its values in one source. Lists take every value,
// each split on commas and blanks; other kinds take the last value.
func setRaw(v reflect.Value, raws []string) error {
	if v.Kind() == reflect.Slice {
		var list []string
		for _, raw := range raws {
			list = append(list, strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })...)
		}
		v.Set(reflect.ValueOf(list))
		return nil
	}
	raw := raws[len(raws)-1]
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("want a duration such as 96h or 30m, not %q", raw)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(raw)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("want true or false, not %q", raw)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("want an integer, not %q", raw)
		}
		v.SetInt(int64(n))
	default:
		return fmt.Errorf("unsupported kind %v", v.Kind())
	}
	return nil
}

// formatValue is the inverse of setRaw (lists joined by commas).
func formatValue(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return formatDuration(time.Duration(v.Int()))
	case v.Kind() == reflect.Slice:
		return strings.Join(v.Interface().([]string), ",")
	default:
		return fmt.Sprint(v.Interface())
	}
}

// formatDuration writes whole hours as "96h" rather than "96h0m0s".
func formatDuration(d time.Duration) string {
	if d != 0 && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// configSource is the values one source (file, environment, flags) gives,
// by key, in order.
type configSource map[string][]string

func (c *Config) apply(src configSource, origin string) error {
	for _, f := range configFields {
		raws, ok := src[f.key]
		if !ok {
			continue
		}
		if err := setRaw(c.value(f), raws); err != nil {
			return fmt.Errorf("%s: %w", origin, &ConfigError{Key: f.key, Reason: err.Error()})
		}
	}
	return nil
}

// parseConfigFile reads the configuration file format: one "key = value" per
// line, blank lines and lines starting with # ignored, values optionally in
// double quotes (Go syntax), list keys repeated or comma separated.
func parseConfigFile(r io.Reader, name string) (configSource, error) {
	src, _, err := parseConfigFileLines(r, name)
	return src, err
}

// parseConfigFileLines is parseConfigFile that also returns the line each
// key was last set on. A value of the wrong kind (a duration, a number, a
// boolean) is refused here, with its file and line.
func parseConfigFileLines(r io.Reader, name string) (configSource, map[string]int, error) {
	src := configSource{}
	lines := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, nil, fmt.Errorf("%s:%d: want key = value", name, n)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		f, known := fieldByKey(key)
		if !known {
			return nil, nil, fmt.Errorf("%s:%d: unknown key %q", name, n, key)
		}
		if strings.HasPrefix(val, `"`) {
			uq, err := strconv.Unquote(val)
			if err != nil {
				return nil, nil, fmt.Errorf("%s:%d: bad quoted value", name, n)
			}
			val = uq
		}
		var scratch Config
		if err := setRaw(scratch.value(f), []string{val}); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", name, n, &ConfigError{Key: key, Reason: err.Error()})
		}
		src[key] = append(src[key], val)
		lines[key] = n
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	return src, lines, nil
}

// annotateFileLines puts the file and line in front of each ConfigError
// of err (Validate's) whose key got its value from the configuration
// file, not from the environment or a flag.
func annotateFileLines(err error, file string, lines map[string]int, over ...configSource) error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, 0, len(list))
next:
	for _, e := range list {
		var ce *ConfigError
		if errors.As(e, &ce) {
			if n, ok := lines[ce.Key]; ok {
				for _, src := range over {
					if _, set := src[ce.Key]; set {
						out = append(out, e)
						continue next
					}
				}
				e = fmt.Errorf("%s:%d: %w", file, n, e)
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// unknownEnv lists the BMGATE_* variables of environ that name no
// configuration key. BMGATE_CONFIG is known; BMGATE_TEST_* and
// BMGATE_KILL9_* belong to the test suite.
func unknownEnv(environ []string) []string {
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "BMGATE_") || name == "BMGATE_CONFIG" ||
			strings.HasPrefix(name, "BMGATE_TEST_") || strings.HasPrefix(name, "BMGATE_KILL9_") {
			continue
		}
		if _, ok := fieldByKey(strings.ToLower(strings.TrimPrefix(name, "BMGATE_"))); !ok {
			unknown = append(unknown, name)
		}
	}
	return unknown
}

// envSource collects the BMGATE_* variables that name a key.
func envSource(getenv func(string) string) configSource {
	src := configSource{}
	for _, f := range configFields {
		if v := getenv(f.Env()); v != "" {
			src[f.key] = []string{v}
		}
	}
	return src
}

// configFlags binds configuration flags to a subcommand's flag set and
// remembers which were given.
type configFlags struct {
	file string
	set  configSource
}

// flagValue is one configuration flag.
type flagValue struct {
	f   configField
	def string
	set configSource
}

func (v *flagValue) String() string {
	if v == nil {
		return ""
	}
	return v.def
}

func (v *flagValue) Set(s string) error {
	var scratch Config
	if strings.HasPrefix(v.f.flag, "no-") {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		s = strconv.FormatBool(!b)
	}
	if err := setRaw(scratch.value(v.f), []string{s}); err != nil {
		return err
	}
	v.set[v.f.key] = append(v.set[v.f.key], s)
	return nil
}

func (v *flagValue) IsBoolFlag() bool {
	return reflect.TypeFor[Config]().Field(v.f.index).Type.Kind() == reflect.Bool
}

// bindConfigFlags adds --config and the configuration flags (every one for
// serve, the "all" ones otherwise) to fs.
func bindConfigFlags(fs *flag.FlagSet, serve bool) *configFlags {
	cf := &configFlags{set: configSource{}}
	fs.StringVar(&cf.file, "config", "", "Configuration `FILE` (env BMGATE_CONFIG)")
	def := DefaultConfig()
	for _, f := range configFields {
		if f.flag == "" || !(serve || f.all) {
			continue
		}
		v := &flagValue{f: f, set: cf.set}
		if f.secret != "all" && !strings.HasPrefix(f.flag, "no-") {
			v.def = formatValue(def.value(f))
		}
		fs.Var(v, f.flag, strings.TrimSuffix(f.flagHelp, "."))
	}
	return cf
}

// load builds the effective configuration: defaults, then the file (from
// --config or BMGATE_CONFIG), then the environment, then the flags given.
// The result is resolved and validated.
func (cf *configFlags) load(getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	var lines map[string]int
	file := cf.file
	if file == "" {
		file = getenv("BMGATE_CONFIG")
	}
	if file != "" {
		fh, err := os.Open(file)
		if err != nil {
			return Config{}, fmt.Errorf("open config: %w", err)
		}
		var src configSource
		src, lines, err = parseConfigFileLines(fh, file)
		fh.Close()
		if err != nil {
			return Config{}, err
		}
		if err := cfg.apply(src, file); err != nil {
			return Config{}, err
		}
	}
	env := envSource(getenv)
	if err := cfg.apply(env, "environment"); err != nil {
		return Config{}, err
	}
	if err := cfg.apply(cf.set, "flags"); err != nil {
		return Config{}, err
	}
	cfg.resolve()
	if err := cfg.Validate(); err != nil {
		return Config{}, annotateFileLines(err, file, lines, env, cf.set)
	}
	return cfg, nil
}

// WriteSample writes the sample configuration file: every key with its help
