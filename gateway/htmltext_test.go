package gateway

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// htmlGrowth bounds how much longer than its input HTMLToText's output can
// be: the costliest markup, an empty <li> at the maximum list and quote
// depth, is 4 bytes that render as a line end, 2·maxHTMLDepth bytes of
// quote marks, 2·maxHTMLDepth of indent and a number of up to 8 digits.
const htmlGrowth = (1 + 4*maxHTMLDepth + 8 + 2 + 3) / 4

// TestHTMLToTextSpec covers markup the HTML5 tokenizer reads differently
// from a naive scanner.
func TestHTMLToTextSpec(t *testing.T) {
	tests := []struct{ in, want string }{
		// An unquoted value may end in "/": the tag is not self-closing.
		{"<a href=http://x.org/>site</a>", "site <http://x.org/>\n"},
		// "</>" is dropped; "</0" starts a bogus comment.
		{"a</>b</0>c", "abc\n"},
		// In an attribute, "&copy=" is not a character reference.
		{"<a href='http://x.org/?a=1&copy=2'>x</a>", "x <http://x.org/?a=1&copy=2>\n"},
		// "<!-->" is a whole (empty) comment.
		{"<!-->shown", "shown\n"},
		// A tag name runs to white space, "/" or ">": "<a<b>" is no link.
		{"<a href=mailto:b@x.org>b</a><a<b>c</a>", "b <b@x.org>c\n"},
		// Raw text: no markup inside a script, even unterminated.
		{"<script>if (a<b) { x = '</p>' }</script>after", "after\n"},
		{"before<script>document.write('x')", "before\n"},
		{"<style/>p{}</style>x<template><p>hidden</p></template>y", "xy\n"},
		{"<iframe src=x>fallback</iframe>shown", "shown\n"},
		// xmp and plaintext show their content as written.
		{"<xmp><b>bold</b>  &amp;</xmp>", "<b>bold</b>  &amp;\n"},
		{"<plaintext><p>all  of this", "<p>all  of this\n"},
		// CR is a line end in preformatted text.
		{"<pre>a\rb\r\nc</pre>", "a\nb\nc\n"},
		// Repeated attributes: the first one counts.
		{"<img alt=one alt=two>", "[one]\n"},
		// Invalid UTF-8 is repaired.
		{"a\xffb", "a\uFFFDb\n"},
	}
	for _, tc := range tests {
		if got := HTMLToText(tc.in); got != tc.want {
			t.Errorf("HTMLToText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHTMLToTextGrowth(t *testing.T) {
	deep := strings.Repeat("<blockquote>", maxHTMLDepth+1) + strings.Repeat("<ol start=1048575>", maxHTMLDepth+1)
	for _, unit := range []string{"<li>", "<hr>", "<p>x", "<tr>x", "<br>x", "\xff"} {
		in := deep + strings.Repeat(unit, 5000)
		if out := HTMLToText(in); len(out) > htmlGrowth*len(in)+1 {
			t.Errorf("%q: %d bytes of output for %d of input", unit, len(out), len(in))
		}
	}
	in := deep + "<pre>" + strings.Repeat("\nx", 5000)
	if out := HTMLToText(in); len(out) > htmlGrowth*len(in)+1 {
		t.Errorf("pre: %d bytes of output for %d of input", len(out), len(in))
	}
}

// FuzzHTMLToText: HTMLToText never panics, writes valid UTF-8 ending in a
// line end, and its output is at most htmlGrowth times its input.
func FuzzHTMLToText(f *testing.F) {
	for _, s := range []string{
		"<p>a</p><p>b</p>", "a<br>b<br/><br />c", "<SCRIPT type=x>hidden</SCRIPT >after",
		"<a href='mailto:bob@x.org'>Bob</a>", "&lt;&gt;&amp;&quot;&#39;&#x41;&eacute;&unknown;",
		"<table><tr><td>a</td><td>b</td></tr></table>", "<ol start=3><li>x<li>y</ol>",
		"<blockquote><p>q1</p><blockquote>q2</blockquote></blockquote>end", "<img alt='logo' src=x>",
		"<!-- unterminated comment", "text <b unterminated", "<p title='a>b'>x</p>",
		"<head><title>t</title></head><body>body</body>", "<pre>a\n  b</pre>", "<<<>>>", "</0<!-->",
		"<xmp>x</xmp><plaintext>y", "<template><p>x</template>", "\xff\x00\r\n&#0;&#xD800;",
		strings.Repeat("<blockquote>", 20) + strings.Repeat("<ol start=999999><li>", 20),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := HTMLToText(in)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 in output %q", out)
		}
		if !strings.HasSuffix(out, "\n") {
			t.Fatalf("output %q does not end in a line end", out)
		}
		if len(out) > htmlGrowth*len(in)+1 {
			t.Fatalf("%d bytes of output for %d of input", len(out), len(in))
		}
	})
}
