package gateway

import (
	"strconv"
	"strings"

	"golang.org/x/net/html"
)

// maxHTMLDepth caps the quote marks and list indents rendered, so the
// output stays linear in the input.
const maxHTMLDepth = 16

// Elements whose content is not shown: scripts, styles, the title, form
// fields and fallbacks for features every mail reader has. The tokenizer
// reads most of them as raw text; a template is skipped up to its end tag.
var skippedTags = map[string]bool{
	"script": true, "style": true, "title": true, "textarea": true, "template": true,
	"noscript": true, "iframe": true, "noembed": true, "noframes": true,
}

// HTMLToText renders HTML as readable plain text: paragraphs, line breaks,
// list items, block quotes and preformatted text keep their shape; links
// keep their target after the text; scripts, styles and the head are
// dropped; character references are decoded. Markup is read by the HTML5
// tokenizer of golang.org/x/net/html; it never fails: malformed markup
// degrades to text, and markup cut off at the end is dropped.
func HTMLToText(src string) string {
	w := &textWriter{nl: 2}
	type link struct {
		target string
		start  int // output length when the link opened
	}
	var links []link // open <a> elements, innermost last
	var lists []int  // open lists: -1 = bullets, else the next number
	inHead := false
	skip := "" // the skipped element whose end tag is awaited
	z := html.NewTokenizer(strings.NewReader(src))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			// io.EOF, or input the tokenizer cannot buffer (it reads from
			// memory, so only EOF in practice).
			return w.String()
		}
		if skip != "" {
			if tt == html.EndTagToken {
				if name, _ := z.TagName(); string(name) == skip {
					skip = ""
				}
			}
			continue
		}
		switch tt {
		case html.TextToken:
			if !inHead {
				w.text(string(z.Text()))
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "head":
				inHead = false
			case "a":
				if len(links) > 0 {
					l := links[len(links)-1]
					links = links[:len(links)-1]
					// A link whose text is its target needs no repeat.
					if l.target != "" && strings.TrimSpace(w.b.String()[l.start:]) != l.target {
						w.text(" <" + l.target + ">")
					}
				}
			case "ul", "ol":
				if len(lists) > 0 {
					lists = lists[:len(lists)-1]
				}
				w.paragraph()
			case "blockquote":
				w.paragraph()
				if w.quote > 0 {
					w.quote--
				}
			case "pre", "xmp":
				if w.pre > 0 {
					w.pre--
				}
				w.paragraph()
			default:
				w.endTag(string(name))
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			// A self-closing flag means nothing on HTML elements but void
			// ones, which have no end tag anyway: <a/> opens a link.
			bname, hasAttr := z.TagName()
			name := string(bname)
			var attrs map[string]string
			if hasAttr {
				attrs = tagAttrs(z)
			}
			switch name {
			case "head":
				inHead = true
			case "body":
				inHead = false
			case "br":
				w.lineBreak()
			case "hr":
				w.block()
				w.text("----------")
				w.block()
			case "a":
				links = append(links, link{target: linkTarget(attrs["href"]), start: w.b.Len()})
			case "img":
				if alt := oneLine(attrs["alt"]); alt != "" {
					w.text("[" + alt + "]")
				}
			case "ul":
				w.block()
				lists = append(lists, -1)
			case "ol":
				w.block()
				start := 1
				if n, err := strconv.Atoi(strings.TrimSpace(attrs["start"])); err == nil && n >= 0 && n < 1<<20 {
					start = n
				}
				lists = append(lists, start)
			case "li":
				w.block()
				indent := strings.Repeat("  ", min(max(len(lists)-1, 0), maxHTMLDepth))
				if len(lists) > 0 && lists[len(lists)-1] >= 0 {
					w.raw(indent + strconv.Itoa(lists[len(lists)-1]) + ". ")
					lists[len(lists)-1]++
				} else {
					w.raw(indent + "* ")
				}
			case "blockquote":
				w.paragraph()
				w.quote++
			case "pre", "xmp", "plaintext":
				// xmp and plaintext are read as raw text, shown as written.
				w.paragraph()
				w.pre++
			case "td", "th":
				w.space = true
			default:
				if skippedTags[name] {
					skip = name
					continue
				}
				w.startTag(name)
			}
		}
		// Comments, doctypes and processing instructions show nothing.
	}
}

// tagAttrs returns the attributes of the current tag: names lower case,
// values with character references decoded. Of a repeated name the
// tokenizer keeps the first.
func tagAttrs(z *html.Tokenizer) map[string]string {
	attrs := map[string]string{}
	for more := true; more; {
		var k, v []byte
		k, v, more = z.TagAttr()
		attrs[string(k)] = string(v)
	}
	return attrs
}

// linkTarget returns the part of an href (already decoded) worth showing:
// web and mail links.
func linkTarget(href string) string {
	href = oneLine(href)
	for _, p := range []string{"http://", "https://", "ftp://"} {
		if hasPrefixFold(href, p) {
			return href
		}
	}
	if hasPrefixFold(href, "mailto:") {
		return href[len("mailto:"):]
	}
	return ""
}

// hasPrefixFold is strings.HasPrefix without regard to ASCII case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// textWriter collects rendered text, collapsing white space the way a
// browser does outside <pre>.
type textWriter struct {
	b     strings.Builder
	nl    int  // line ends at the end of the output (2 at the start: no leading blank lines)
	space bool // a collapsed space is pending
	quote int  // block quote depth
	pre   int  // inside <pre>
}

// Block elements that start on a line of their own; the first set also
// leaves a blank line around them.
var (
	paragraphTags = map[string]bool{"p": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true, "table": true, "dl": true, "figure": true, "address": true, "fieldset": true, "form": true}
	blockTags     = map[string]bool{"div": true, "tr": true, "dt": true, "dd": true, "section": true, "article": true, "header": true, "footer": true, "nav": true, "aside": true, "main": true, "center": true, "caption": true, "figcaption": true, "details": true, "summary": true, "tbody": true, "thead": true, "tfoot": true}
)

func (w *textWriter) startTag(name string) {
	switch {
	case paragraphTags[name]:
		w.paragraph()
	case blockTags[name]:
		w.block()
	}
}

func (w *textWriter) endTag(name string) {
	w.startTag(name)
}

func (w *textWriter) text(s string) {
	for _, r := range s {
		if w.pre > 0 {
			if r == '\n' {
				w.newline()
				continue
			}
			if r == '\r' {
				continue
			}
			w.put(r)
			continue
		}
		switch r {
		case ' ', '\t', '\n', '\r', '\f':
			w.space = true
			continue
		case '\u00a0':
			r = ' '
		}
		if w.space && w.nl == 0 {
			w.b.WriteByte(' ')
		}
		w.space = false
		w.put(r)
	}
}

// raw writes s as it is, with no white space collapsing.
func (w *textWriter) raw(s string) {
	for _, r := range s {
		w.put(r)
	}
	w.space = false
}

// put writes one rune, starting the line with the quote marks.
func (w *textWriter) put(r rune) {
	if w.nl > 0 && w.quote > 0 {
		w.b.WriteString(strings.Repeat("> ", min(w.quote, maxHTMLDepth)))
	}
	w.b.WriteRune(r)
	w.nl = 0
}

func (w *textWriter) newline() {
	w.b.WriteByte('\n')
	w.nl++
	w.space = false
}

// lineBreak is <br>: always a new line, but never more than one blank line.
func (w *textWriter) lineBreak() {
	if w.nl < 2 {
		w.newline()
	}
}

func (w *textWriter) block() {
	if w.nl < 1 {
		w.newline()
	}
	w.space = false
}

func (w *textWriter) paragraph() {
	for w.nl < 2 {
		w.newline()
	}
	w.space = false
}

func (w *textWriter) String() string {
	lines := strings.Split(w.b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Trim(strings.Join(lines, "\n"), "\n") + "\n"
}
