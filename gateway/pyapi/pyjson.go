package pyapi

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// JSON as PyBitmessage writes it: Python 2's json.dumps(obj, indent=4,
// separators=(',', ': ')), ASCII only (ensure_ascii), keys in the order
// given here (Python's dict order is arbitrary, so clients cannot rely on
// one).

// obj is a JSON object with ordered keys.
type obj []kv

type kv struct {
	k string
	v any
}

// pyJSON returns v as json.dumps(v, indent=4, separators=(',', ': ')).
func pyJSON(v any) string {
	var b strings.Builder
	writeJSON(&b, v, 0)
	return b.String()
}

func writeJSON(b *strings.Builder, v any, level int) {
	indent := func(l int) {
		b.WriteByte('\n')
		b.WriteString(strings.Repeat("    ", l))
	}
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		writeJSONString(b, v)
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int:
		b.WriteString(strconv.Itoa(v))
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case uint64:
		b.WriteString(strconv.FormatUint(v, 10))
	case float64:
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	case obj:
		if len(v) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteByte('{')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			indent(level + 1)
			writeJSONString(b, e.k)
			b.WriteString(": ")
			writeJSON(b, e.v, level+1)
		}
		indent(level)
		b.WriteByte('}')
	case []any:
		if len(v) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			indent(level + 1)
			writeJSON(b, e, level+1)
		}
		indent(level)
		b.WriteByte(']')
	default:
		writeJSONString(b, fmt.Sprint(v))
	}
}

// writeJSONString writes s as Python's json module does with
// ensure_ascii: non-ASCII as \uXXXX (surrogate pairs above the BMP).
func writeJSONString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || (r > 0x7f && r < 0x10000):
			fmt.Fprintf(b, `\u%04x`, r)
		case r >= 0x10000:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

// framed is PyBitmessage's hand-made framing of a list: `{"key":[` then the
// items' json.dumps joined by commas, then `]}`.
func framed(key string, items []obj) string {
	var b strings.Builder
	b.WriteString(`{"` + key + `":[`)
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSON(&b, it, 0)
	}
	b.WriteString("]}")
	return b.String()
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
