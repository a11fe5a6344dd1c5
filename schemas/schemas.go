// Package schemas embeds the JSON Schemas of every Ferry event (the source of
// truth for the event contracts) and validates documents by event type.
//
// A schema lives at events/<domain>/<event>.v<N>.json and describes the whole
// CloudEvents envelope of the type io.ferry.<domain>.<event>.v<N>; it refers
// to envelope.v1.json for the common attributes.
package schemas

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
)

//go:embed envelope.v1.json events examples asyncapi.yaml
var files embed.FS

// BaseURL is the $id prefix of every schema.
const BaseURL = "https://schemas.ferry.dev/"

// ErrUnknownType is returned when no schema exists for an event type.
var ErrUnknownType = errors.New("unknown event type")

// Error is a validation failure: the JSON pointer of the offending field and
// the reason.
type Error struct {
	Type   string
	Path   string
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", e.Type, e.Reason)
	}
	return fmt.Sprintf("%s at %s: %s", e.Type, e.Path, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

var (
	loadOnce sync.Once
	pathOf   map[string]string // event type -> schema path
	loadErr  error

	// A schema is compiled the first time its type is validated: a service
	// holds only the schemas of the events it publishes or reads.
	compileMu sync.Mutex
	shared    = newCompiler() // nodes shared between schemas (the envelope's)
	compiled  = map[string]*node{}
)

// FS returns the embedded schema tree: envelope.v1.json, events/, examples/
// and asyncapi.yaml (for tests and the AsyncAPI check).
func FS() fs.FS { return files }

// TypeOfPath maps events/<domain>/<event>.v1.json to io.ferry.<domain>.<event>.v1.
func TypeOfPath(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "events/")
	if !ok || !strings.HasSuffix(rest, ".json") {
		return "", false
	}
	rest = strings.TrimSuffix(rest, ".json")
	dom, ev, ok := strings.Cut(rest, "/")
	if !ok {
		return "", false
	}
	return "io.ferry." + dom + "." + ev, true
}

// load indexes the event types by the schema files' names.
func load() error {
	loadOnce.Do(func() {
		idx := map[string]string{}
		loadErr = fs.WalkDir(files, "events", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if typ, ok := TypeOfPath(p); ok && !d.IsDir() {
				idx[typ] = p
			}
			return nil
		})
		pathOf = idx
	})
	return loadErr
}

// schemaOf returns the compiled schema of typ, compiling it on first use.
func schemaOf(typ string) (*node, error) {
	if err := load(); err != nil {
		return nil, err
	}
	p, ok := pathOf[typ]
	if !ok {
		return nil, ErrUnknownType
	}
	compileMu.Lock()
	defer compileMu.Unlock()
	if n := compiled[typ]; n != nil {
		return n, nil
	}
	n, err := shared.compile(p, "")
	clear(shared.docs) // the parsed documents are not needed once compiled
	if err != nil {
		// Start afresh so no later schema reuses a half-compiled node; the
		// schemas compiled before keep their own, whole, nodes.
		shared = newCompiler()
		return nil, fmt.Errorf("compile %s: %w", p, err)
	}
	compiled[typ] = n
	return n, nil
}

// Types lists the event types that have a schema, sorted.
func Types() ([]string, error) {
	if err := load(); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(pathOf))
	for t := range pathOf {
		out = append(out, t)
	}
	sort.Strings(out)
	return out, nil
}

// CompileAll compiles every schema and returns every failure (for tests and
// start-up checks; Validate compiles a type's schema on first use).
func CompileAll() error {
	types, err := Types()
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range types {
		if _, err := schemaOf(t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Validate checks a whole CloudEvents envelope (JSON) against the schema of typ.
func Validate(typ string, body []byte) error {
	n, err := schemaOf(typ)
	if errors.Is(err, ErrUnknownType) {
		return &Error{Type: typ, Path: "/type", Reason: fmt.Sprintf("unknown event type %q", typ), Err: ErrUnknownType}
	}
	if err != nil {
		return &Error{Type: typ, Reason: "schema does not compile: " + err.Error(), Err: err}
	}
	inst, err := decodeJSON(body)
	if err != nil {
		return &Error{Type: typ, Reason: "not JSON: " + err.Error(), Err: err}
	}
	var vs []violation
	n.validate(inst, nil, &vs)
	if len(vs) == 0 {
		return nil
	}
	v := pick(vs)
	return &Error{Type: typ, Path: pointer(v.path), Reason: v.reason, Err: errInvalid}
}

// errInvalid is the cause of every validation failure.
var errInvalid = errors.New("does not match its schema")

func pointer(loc []string) string {
	if len(loc) == 0 {
		return ""
	}
	var sb strings.Builder
	for _, t := range loc {
		sb.WriteByte('/')
		sb.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return sb.String()
}
