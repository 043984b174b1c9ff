package gateway

import "strings"

// unflow decodes format=flowed text (RFC 3676 §4.2): lines ending in a
// space continue on the next line of the same quote depth; space-stuffing
// is removed; the signature separator "-- " stays a line of its own.
// Quoted paragraphs come out as one line each behind "> " marks.
func unflow(text string, delsp bool) string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	lines := strings.Split(text, "\n")
	var out strings.Builder
	var para strings.Builder
	paraDepth := -1 // quote depth of the open paragraph, -1 = none
	// flush ends the open paragraph; trim drops the space of a flowed
	// line that had no continuation.
	flush := func(trim bool) {
		if paraDepth < 0 {
			return
		}
		text := para.String()
		if trim {
			text = strings.TrimRight(text, " ")
		}
		if paraDepth > 0 {
			out.WriteString(strings.Repeat(">", paraDepth))
			if text != "" {
				out.WriteByte(' ')
			}
		}
		out.WriteString(text)
		out.WriteByte('\n')
		para.Reset()
		paraDepth = -1
	}
	for i, line := range lines {
		if i == len(lines)-1 && line == "" {
			break // the text's final line end
		}
		depth := 0
		for depth < len(line) && line[depth] == '>' {
			depth++
		}
		line = line[depth:]
		line = strings.TrimPrefix(line, " ") // space-stuffing
		if paraDepth >= 0 && depth != paraDepth {
			flush(true) // RFC 3676 §4.5: a depth change ends the paragraph
		}
		flowed := strings.HasSuffix(line, " ") && line != "-- "
		if flowed && delsp {
			line = line[:len(line)-1]
		}
		paraDepth = depth
		para.WriteString(line)
		if !flowed {
			flush(false)
		}
	}
	flush(true)
	return out.String()
}
