// Package docs checks the repository's Markdown: every relative link resolves to a file
// of the repository, so a fresh clone's documents never point at something it lacks.
package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdLink matches [text](target) and captures the target up to a space, ')' or '#'.
var mdLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s#]*)(#[^)\s]*)?\)`)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

// brokenLinks returns "file: target (reason)" for every relative link in the Markdown
// files under root that names no file inside root.
func brokenLinks(root string) ([]string, error) {
	var broken []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "results") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".md") {
			return nil
		}
		body, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, m := range mdLink.FindAllStringSubmatch(string(body), -1) {
			target := m[1]
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			abs := filepath.Clean(filepath.Join(filepath.Dir(path), target))
			if r, err := filepath.Rel(root, abs); err != nil || strings.HasPrefix(r, "..") {
				broken = append(broken, rel+": "+target+" (outside the repository)")
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				broken = append(broken, rel+": "+target+" (no such file)")
			}
		}
		return nil
	})
	return broken, err
}

func TestMarkdownLinksResolve(t *testing.T) {
	broken, err := brokenLinks(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range broken {
		t.Errorf("broken link: %s", b)
	}
}

func TestBrokenLinksAreFound(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.work"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.md"), []byte("[ok](a.md) [web](https://x.y/z) [anchor](#top)\n[gone](docs/b.md) [out](../shared/DESIGN.md#x)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken, err := brokenLinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.md: docs/b.md (no such file)", "a.md: ../shared/DESIGN.md (outside the repository)"}
	if strings.Join(broken, "|") != strings.Join(want, "|") {
		t.Fatalf("brokenLinks = %q, want %q", broken, want)
	}
}
