// Package schemas embeds the JSON Schemas of every Ferry event (the source of
// truth for the event contracts) and validates documents by event type.
//
// A schema lives at events/<domain>/<event>.v<N>.json and describes the whole
// CloudEvents envelope of the type io.ferry.<domain>.<event>.v<N>; it refers
// to envelope.v1.json for the common attributes.
package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
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
	compiler *jsonschema.Compiler
	pathOf   map[string]string // event type -> schema path
	loadErr  error

	// A schema is compiled the first time its type is validated: a service
	// holds only the schemas of the events it publishes or reads (compiling
	// all 21 costs ~400 KB of heap that a host keeps for its lifetime).
	compileMu sync.Mutex
	compiled  = map[string]*jsonschema.Schema{}
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

// load parses every schema into the compiler and indexes the event types.
func load() error {
	loadOnce.Do(func() {
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		c.DefaultDraft(jsonschema.Draft2020)
		idx := map[string]string{}
		loadErr = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || path.Ext(p) != ".json" || strings.HasPrefix(p, "examples/") {
				return nil
			}
			b, err := files.ReadFile(p)
			if err != nil {
				return err
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				return fmt.Errorf("schema %s: %w", p, err)
			}
			if err := c.AddResource(BaseURL+p, doc); err != nil {
				return fmt.Errorf("schema %s: %w", p, err)
			}
			if typ, ok := TypeOfPath(p); ok {
				idx[typ] = p
			}
			return nil
		})
		compiler, pathOf = c, idx
	})
	return loadErr
}

// schemaOf returns the compiled schema of typ, compiling it on first use.
func schemaOf(typ string) (*jsonschema.Schema, error) {
	if err := load(); err != nil {
		return nil, err
	}
	p, ok := pathOf[typ]
	if !ok {
		return nil, ErrUnknownType
	}
	compileMu.Lock()
	defer compileMu.Unlock()
	if sch := compiled[typ]; sch != nil {
		return sch, nil
	}
	sch, err := compiler.Compile(BaseURL + p)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", p, err)
	}
	compiled[typ] = sch
	return sch, nil
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
	sch, err := schemaOf(typ)
	if errors.Is(err, ErrUnknownType) {
		return &Error{Type: typ, Path: "/type", Reason: fmt.Sprintf("unknown event type %q", typ), Err: ErrUnknownType}
	}
	if err != nil {
		return &Error{Type: typ, Reason: "schema does not compile: " + err.Error(), Err: err}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return &Error{Type: typ, Reason: "not JSON: " + err.Error(), Err: err}
	}
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			leaf := deepest(ve)
			return &Error{Type: typ, Path: pointer(leaf.InstanceLocation), Reason: leafReason(leaf), Err: err}
		}
		return &Error{Type: typ, Reason: err.Error(), Err: err}
	}
	return nil
}

// deepest follows the causes of e to the most useful leaf: a real violation
// (not the "unevaluated property" fallout of a failed $ref) that points
// deepest into the instance.
func deepest(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(e.Causes) > 0 {
		best := e.Causes[0]
		for _, c := range e.Causes[1:] {
			if better(c, best) {
				best = c
			}
		}
		e = best
	}
	return e
}

func better(a, b *jsonschema.ValidationError) bool {
	if fa, fb := onlyFalse(a), onlyFalse(b); fa != fb {
		return fb
	}
	return len(a.InstanceLocation) > len(b.InstanceLocation)
}

// onlyFalse reports whether every leaf under e is a false schema, which is how
// unevaluatedProperties:false reports properties left over by a failed $ref.
func onlyFalse(e *jsonschema.ValidationError) bool {
	if len(e.Causes) == 0 {
		_, ok := e.ErrorKind.(*kind.FalseSchema)
		return ok
	}
	for _, c := range e.Causes {
		if !onlyFalse(c) {
			return false
		}
	}
	return true
}

func leafReason(e *jsonschema.ValidationError) string {
	if _, ok := e.ErrorKind.(*kind.FalseSchema); ok {
		return "property not allowed"
	}
	msg := e.Error()
	// The library prints "jsonschema validation failed with '<url>'\n- at '<ptr>': <reason>".
	if i := strings.LastIndex(msg, "': "); i >= 0 {
		return strings.TrimSpace(msg[i+3:])
	}
	return msg
}

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
