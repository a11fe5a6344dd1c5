package schemas_test

import (
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ferrystream/ferry/schemas"
)

// asyncAPI is a line-level reading of asyncapi.yaml, enough to cross-check
// it without a YAML dependency. It relies on the file's two-space indent.
type asyncAPI struct {
	text     string
	channels map[string]channel // by channel id
	messages map[string]bool    // components/messages ids
}

type channel struct {
	address string
	params  []string
}

func readAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	b, err := fs.ReadFile(schemas.FS(), "asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := asyncAPI{text: string(b), channels: map[string]channel{}, messages: map[string]bool{}}
	var section, sub, cur string
	for _, line := range strings.Split(doc.text, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		key, val, _ := strings.Cut(strings.TrimSpace(line), ":")
		val = strings.TrimSpace(val)
		switch {
		case indent == 0:
			section, sub, cur = key, "", ""
		case section == "channels" && indent == 2:
			cur, sub = key, ""
			doc.channels[cur] = channel{}
		case section == "channels" && indent == 4:
			sub = key
			if key == "address" {
				ch := doc.channels[cur]
				ch.address = val
				doc.channels[cur] = ch
			}
		case section == "channels" && indent == 6 && sub == "parameters":
			ch := doc.channels[cur]
			ch.params = append(ch.params, key)
			doc.channels[cur] = ch
		case section == "components" && indent == 2:
			sub = key
		case section == "components" && indent == 4 && sub == "messages":
			doc.messages[key] = true
		}
	}
	if len(doc.channels) == 0 || len(doc.messages) == 0 {
		t.Fatalf("asyncapi.yaml: found %d channels and %d messages", len(doc.channels), len(doc.messages))
	}
	return doc
}

func (d asyncAPI) addresses() []string {
	var out []string
	for _, ch := range d.channels {
		out = append(out, ch.address)
	}
	return out
}

func TestAsyncAPIHeader(t *testing.T) {
	d := readAsyncAPI(t)
	if !strings.Contains(d.text, "\nasyncapi: 3.0.0\n") {
		t.Error("not an AsyncAPI 3.0.0 document")
	}
}

// TestAsyncAPISubjects: every subject the document mentions anywhere is the
// address of one of its channels, and each address's {parameters} are declared.
func TestAsyncAPISubjects(t *testing.T) {
	d := readAsyncAPI(t)
	addrs := d.addresses()
	// A subject starts a word that is not part of a dotted name (io.ferry.x is a type).
	subj := regexp.MustCompile(`(?:^|[^.\w/])((?:ferry|placement)\.[A-Za-z0-9_.{}*>-]*[A-Za-z0-9_}*>])`)
	n := 0
	for _, sm := range subj.FindAllStringSubmatch(d.text, -1) {
		m := sm[1]
		n++
		if strings.HasPrefix(m, "ferry.dev") || strings.HasPrefix(m, "ferry.io") {
			continue
		}
		if !slices.Contains(addrs, m) {
			t.Errorf("subject %q is mentioned but is no channel address", m)
		}
	}
	if n < len(d.channels) {
		t.Errorf("found %d subjects, fewer than the %d channels", n, len(d.channels))
	}
	param := regexp.MustCompile(`\{([a-z_]+)\}`)
	for id, ch := range d.channels {
		var want []string
		for _, m := range param.FindAllStringSubmatch(ch.address, -1) {
			want = append(want, m[1])
		}
		slices.Sort(want)
		got := slices.Sorted(slices.Values(ch.params))
		if !slices.Equal(got, want) {
			t.Errorf("channel %s (%s): parameters %v, address has %v", id, ch.address, got, want)
		}
	}
	for _, must := range []string{"placement.v1.choose", "placement.v1.get"} {
		if !slices.Contains(addrs, must) {
			t.Errorf("no channel %s", must)
		}
	}
}

// TestAsyncAPIRefs: every local $ref resolves, every payload file exists, and
// every event schema is the payload of some message.
func TestAsyncAPIRefs(t *testing.T) {
	d := readAsyncAPI(t)
	ref := regexp.MustCompile(`\$ref: '([^']+)'`)
	files := map[string]bool{}
	for _, m := range ref.FindAllStringSubmatch(d.text, -1) {
		r := m[1]
		switch {
		case strings.HasPrefix(r, "#/channels/"):
			if _, ok := d.channels[strings.TrimPrefix(r, "#/channels/")]; !ok {
				t.Errorf("dangling %s", r)
			}
		case strings.HasPrefix(r, "#/components/messages/"):
			if !d.messages[strings.TrimPrefix(r, "#/components/messages/")] {
				t.Errorf("dangling %s", r)
			}
		case strings.HasPrefix(r, "#/components/messageTraits/"):
			if !strings.Contains(d.text, "\n    "+strings.TrimPrefix(r, "#/components/messageTraits/")+":\n") {
				t.Errorf("dangling %s", r)
			}
		case strings.HasPrefix(r, "./"):
			p, _, _ := strings.Cut(strings.TrimPrefix(r, "./"), "#")
			if _, err := fs.Stat(schemas.FS(), p); err != nil {
				t.Errorf("%s: %v", r, err)
			}
			files[p] = true
		default:
			t.Errorf("unexpected $ref %q", r)
		}
	}
	err := fs.WalkDir(schemas.FS(), "events", func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !files[p] {
			t.Errorf("schema %s is no message payload in asyncapi.yaml", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAsyncAPIOperations: every channel has a sender and a receiver.
func TestAsyncAPIOperations(t *testing.T) {
	d := readAsyncAPI(t)
	_, ops, ok := strings.Cut(d.text, "\noperations:\n")
	if !ok {
		t.Fatal("no operations")
	}
	ops, _, _ = strings.Cut(ops, "\ncomponents:\n")
	for id, ch := range d.channels {
		if ch.address == "null" {
			continue // reply inboxes are used through operations' reply
		}
		for _, action := range []string{"send", "receive"} {
			re := regexp.MustCompile(`action: ` + action + `\n    channel:\n      \$ref: '#/channels/` + regexp.QuoteMeta(id) + `'\n`)
			if !re.MatchString(ops) {
				t.Errorf("channel %s has no %s operation", id, action)
			}
		}
	}
}
