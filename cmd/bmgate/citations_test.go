package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository root as seen from this package's directory.
const repoRoot = "../.."

// protocolDoc is the protocol notes that code comments cite.
const protocolDoc = "docs/protocol.md"

var (
	// protocolHeading matches a numbered heading of docs/protocol.md:
	// "## §5 Objects", "### §5.4 Lifetime…".
	protocolHeading = regexp.MustCompile(`(?m)^#{2,4} §([0-9]+(?:\.[0-9]+)*)(?:\s|$)`)
	// protocolCitation matches "docs/protocol.md §N" and a list or range
	// that follows it ("§2–§5, §11, §4.4 and §16"). A citation may wrap onto
	// the next comment line after the file name.
	protocolCitation = regexp.MustCompile(`docs/protocol\.md(?:[ \t]*\r?\n[ \t]*//)?[ \t]*(§[0-9]+(?:\.[0-9]+)*(?:\s*(?:,|–|-|and)\s*§[0-9]+(?:\.[0-9]+)*)*)`)
	// sectionRef matches one "§N.M" with the separator before it.
	sectionRef = regexp.MustCompile(`(–|-)?\s*§([0-9]+(?:\.[0-9]+)*)`)
	// bareSection matches any "§N.M" in docs/protocol.md itself.
	bareSection = regexp.MustCompile(`§([0-9]+(?:\.[0-9]+)*)`)
)

// walkRepo calls fn for every regular file of the repository, skipping .git.
func walkRepo(t *testing.T, fn func(rel string, data []byte)) {
	t.Helper()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(repoRoot, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fn(filepath.ToSlash(rel), data)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", repoRoot, err)
	}
}

// protocolSections returns the section numbers that have a heading in
// docs/protocol.md.
func protocolSections(t *testing.T) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot, protocolDoc))
	if err != nil {
		t.Fatalf("read %s: %v", protocolDoc, err)
	}
	have := map[string]bool{}
	for _, m := range protocolHeading.FindAllSubmatch(doc, -1) {
		have[string(m[1])] = true
	}
	if len(have) == 0 {
		t.Fatalf("%s has no numbered headings (\"## §N …\")", protocolDoc)
	}
	return have
}

// expandRange lists the sections from a to b inclusive when both have the
// same depth and parent (§2–§5, §7.2–§7.4); otherwise just a and b.
func expandRange(a, b string) []string {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	if len(pa) != len(pb) || strings.Join(pa[:len(pa)-1], ".") != strings.Join(pb[:len(pb)-1], ".") {
		return []string{a, b}
	}
	from, err1 := strconv.Atoi(pa[len(pa)-1])
	to, err2 := strconv.Atoi(pb[len(pb)-1])
	if err1 != nil || err2 != nil || to < from || to-from > 100 {
		return []string{a, b}
	}
	prefix := strings.Join(pa[:len(pa)-1], ".")
	var out []string
	for i := from; i <= to; i++ {
		if prefix == "" {
			out = append(out, strconv.Itoa(i))
		} else {
			out = append(out, prefix+"."+strconv.Itoa(i))
		}
	}
	return out
}

// citedSections returns the section numbers one citation list names.
func citedSections(list string) []string {
	var out []string
	prev := ""
	for _, m := range sectionRef.FindAllStringSubmatch(list, -1) {
		if m[1] != "" && prev != "" {
			out = append(out, expandRange(prev, m[2])...)
		} else {
			out = append(out, m[2])
		}
		prev = m[2]
	}
	return out
}

// lineOf returns the 1-based line of byte offset off in data.
func lineOf(data []byte, off int) int { return bytes.Count(data[:off], []byte("\n")) + 1 }

// TestCitationsResolve checks that every "docs/protocol.md §N" citation in
// the repository's Go and Markdown files names a section that has a heading
// in docs/protocol.md, and that the notes' own cross-references resolve.
func TestCitationsResolve(t *testing.T) {
	have := protocolSections(t)
	var missing []string
	citations := 0
	walkRepo(t, func(rel string, data []byte) {
		if !strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, ".md") {
			return
		}
		for _, loc := range protocolCitation.FindAllSubmatchIndex(data, -1) {
			citations++
			list := string(data[loc[2]:loc[3]])
			for _, s := range citedSections(list) {
				if !have[s] {
					missing = append(missing, rel+":"+strconv.Itoa(lineOf(data, loc[0]))+": §"+s)
				}
			}
		}
		if rel == protocolDoc {
			for _, loc := range bareSection.FindAllSubmatchIndex(data, -1) {
				if s := string(data[loc[2]:loc[3]]); !have[s] {
					missing = append(missing, rel+":"+strconv.Itoa(lineOf(data, loc[0]))+": §"+s+" (cross-reference)")
				}
			}
		}
	})
	if citations == 0 {
		t.Fatalf("no %s citations found under %s: wrong directory?", protocolDoc, repoRoot)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s has no heading in %s", m, protocolDoc)
	}
	t.Logf("%d citations of %s checked against %d sections", citations, protocolDoc, len(have))
}

// TestCitationsStayInRepo checks that no file points outside the repository
// at the reading material the protocol notes were written from: the
// repository carries its own notes.
func TestCitationsStayInRepo(t *testing.T) {
	outside := []byte(".." + "/shared") // split so this file does not match itself
	walkRepo(t, func(rel string, data []byte) {
		head := data
		if len(head) > 8000 {
			head = head[:8000]
		}
		if bytes.IndexByte(head, 0) >= 0 {
			return // binary (a build output or a database)
		}
		if i := bytes.Index(data, outside); i >= 0 {
			t.Errorf("%s:%d refers to %s outside the repository", rel, lineOf(data, i), outside)
		}
	})
}
