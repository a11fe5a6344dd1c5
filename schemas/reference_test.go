package schemas_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/ferrystream/ferry/schemas"
)

// reference compiles every schema with santhosh-tekuri/jsonschema/v6, a
// complete JSON Schema 2020-12 implementation, to check schemas.Validate
// (which implements only the keywords Ferry's schemas use) against it.
type reference struct {
	byType map[string]*jsonschema.Schema
}

func newReference(t testing.TB) *reference {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.DefaultDraft(jsonschema.Draft2020)
	r := &reference{byType: map[string]*jsonschema.Schema{}}
	var paths []string
	err := fs.WalkDir(schemas.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".json" || strings.HasPrefix(p, "examples/") {
			return err
		}
		b, err := fs.ReadFile(schemas.FS(), p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return c.AddResource(schemas.BaseURL+p, doc)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		typ, ok := schemas.TypeOfPath(p)
		if !ok {
			continue
		}
		sch, err := c.Compile(schemas.BaseURL + p)
		if err != nil {
			t.Fatalf("reference does not compile %s: %v", p, err)
		}
		r.byType[typ] = sch
	}
	return r
}

// check returns the JSON pointer the reference reports (chosen the way
// schemas.Validate chooses among several violations), or ok.
func (r *reference) check(typ string, body []byte) (ptr string, ok bool) {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return "", false
	}
	err = r.byType[typ].Validate(inst)
	if err == nil {
		return "", true
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return "", false
	}
	return schemas.Pointer(deepest(ve).InstanceLocation), false
}

func deepest(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(e.Causes) > 0 {
		best := e.Causes[0]
		for _, c := range e.Causes[1:] {
			if fa, fb := onlyFalse(c), onlyFalse(best); fa != fb {
				if fb {
					best = c
				}
				continue
			}
			if len(c.InstanceLocation) > len(best.InstanceLocation) {
				best = c
			}
		}
		e = best
	}
	return e
}

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

// mutations derives documents from a valid example: every member removed,
// every value replaced by values of other types and by edge values, and an
// extra member added to every object.
func mutations(doc any) []any {
	var out []any
	var walk func(v any, set func(any))
	walk = func(v any, set func(any)) {
		for _, alt := range []any{"", "x y", "rtsp://h/p", "2026-13-01T00:00:00Z", "2026-11-23T10:00:00Z",
			json.Number("0"), json.Number("-1"), json.Number("1.5"), json.Number("1e400"), json.Number("70000"),
			true, nil, []any{}, []any{"nats", "nats"}, map[string]any{}} {
			set(alt)
			out = append(out, deepCopy(doc))
		}
		set(v)
		switch x := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				old := x[k]
				delete(x, k)
				out = append(out, deepCopy(doc))
				x[k] = old
				walk(old, func(n any) { x[k] = n })
			}
			x["zz_extra"] = "1"
			out = append(out, deepCopy(doc))
			delete(x, "zz_extra")
		case []any:
			for i := range x {
				walk(x[i], func(n any) { x[i] = n })
			}
			out = append(out, deepCopy(doc)) // unchanged, for the count
		}
	}
	walk(doc, func(any) {})
	return out
}

func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out any
	_ = d.Decode(&out)
	return out
}

// example is one file under examples/.
type example struct {
	path, typ string
	body      []byte
	valid     bool // valid-*.json; invalid-*.json otherwise
}

// allExamples reads every example with the event type its directory names.
func allExamples(tb testing.TB) []example {
	tb.Helper()
	var all []example
	err := fs.WalkDir(schemas.FS(), "examples", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		dir, name := path.Split(p)
		typ, _ := schemas.TypeOfPath("events/" + strings.TrimSuffix(strings.TrimPrefix(dir, "examples/"), "/") + ".json")
		b, err := fs.ReadFile(schemas.FS(), p)
		all = append(all, example{p, typ, b, strings.HasPrefix(name, "valid-")})
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return all
}

// TestValidatorAgreesWithReference checks, for every example and thousands
// of mutations of the valid ones, that schemas.Validate accepts exactly what
// jsonschema/v6 accepts and points at the same place when it refuses.
func TestValidatorAgreesWithReference(t *testing.T) {
	ref := newReference(t)
	var docs, refused int
	for _, ex := range allExamples(t) {
		bodies := [][]byte{ex.body}
		if ex.valid {
			dec := json.NewDecoder(bytes.NewReader(ex.body))
			dec.UseNumber()
			var doc any
			if err := dec.Decode(&doc); err != nil {
				t.Fatal(err)
			}
			for _, m := range mutations(doc) {
				b, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				bodies = append(bodies, b)
			}
		}
		for _, b := range bodies {
			docs++
			wantPtr, wantOK := ref.check(ex.typ, b)
			err := schemas.Validate(ex.typ, b)
			var se *schemas.Error
			switch {
			case wantOK && err != nil:
				t.Errorf("%s: refused what the reference accepts: %v\n%s", ex.path, err, b)
			case !wantOK && err == nil:
				t.Errorf("%s: accepted what the reference refuses (at %q)\n%s", ex.path, wantPtr, b)
			case !wantOK && errors.As(err, &se) && se.Path != wantPtr:
				t.Errorf("%s: refused at %q (%s), the reference at %q\n%s", ex.path, se.Path, se.Reason, wantPtr, b)
			}
			if err != nil {
				refused++
			}
		}
	}
	if docs < 5000 || refused < docs/2 {
		t.Fatalf("only %d documents (%d refused): the mutations do not exercise the schemas", docs, refused)
	}
	t.Logf("%d documents, %d refused by both", docs, refused)
}

// TestValidatorRefusesUnknownKeywords: a schema using a keyword the validator
// does not implement must fail to compile rather than be half-enforced.
func TestValidatorRefusesUnknownKeywords(t *testing.T) {
	err := schemas.CompileDocument([]byte(`{"type":"object","properties":{"a":{"oneOf":[{"type":"string"}]}}}`))
	if err == nil || !strings.Contains(err.Error(), `keyword "oneOf"`) {
		t.Fatalf("got %v, want an unsupported keyword error", err)
	}
	if err := schemas.CompileDocument([]byte(`{"type":"object","properties":{"a":{"format":"email"}}}`)); err == nil {
		t.Fatal("format email compiled; only date-time is implemented")
	}
	if err := schemas.CompileDocument([]byte(`{"type":"object","required":["a"],"properties":{"a":{"type":"string","pattern":"^x"}}}`)); err != nil {
		t.Fatalf("a supported schema: %v", err)
	}
}

// FuzzValidatorAgreesWithReference feeds arbitrary bodies to both validators
// (go test -fuzz FuzzValidatorAgreesWithReference ./schemas): they must
// accept and refuse the same documents, and the validator must not panic.
func FuzzValidatorAgreesWithReference(f *testing.F) {
	for _, ex := range allExamples(f) {
		f.Add(ex.body)
	}
	var ref *reference
	f.Fuzz(func(t *testing.T, body []byte) {
		if ref == nil {
			ref = newReference(t)
		}
		var head struct{ Type string }
		if json.Unmarshal(body, &head) != nil || ref.byType[head.Type] == nil {
			_ = schemas.Validate(head.Type, body) // must not panic
			return
		}
		_, wantOK := ref.check(head.Type, body)
		if err := schemas.Validate(head.Type, body); (err == nil) != wantOK {
			t.Fatalf("validator error %v, reference accepts: %v\n%s", err, wantOK, body)
		}
	})
}

// BenchmarkValidate compares schemas.Validate with the reference on a full
// reassignment event (go test -run '^$' -bench Validate -benchmem .).
func BenchmarkValidate(b *testing.B) {
	body, err := fs.ReadFile(schemas.FS(), "examples/placement/reassigned.v1/valid-full.json")
	if err != nil {
		b.Fatal(err)
	}
	const typ = "io.ferry.placement.reassigned.v1"
	b.Run("ferry", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := schemas.Validate(typ, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference", func(b *testing.B) {
		ref := newReference(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := ref.check(typ, body); !ok {
				b.Fatal("refused")
			}
		}
	})
}

// TestValidateConcurrently validates every example from several goroutines at
// once, so the first compile of each type races (run with -race).
func TestValidateConcurrently(t *testing.T) {
	all := allExamples(t)
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for i := range all {
				e := all[(i+g*17)%len(all)]
				if err := schemas.Validate(e.typ, e.body); (err == nil) != e.valid {
					errs <- fmt.Errorf("%s valid=%v: %v", e.typ, e.valid, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
