package schemas_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"strings"
	"testing"

	"github.com/ferrystream/ferry/schemas"
)

// wantTypes is every event type Ferry defines (events.Types() in libs/events
// checks the same list against its Go types).
var wantTypes = []string{
	"io.ferry.edge.switched.v1",
	"io.ferry.health.host_down.v1",
	"io.ferry.health.outage_cleared.v1",
	"io.ferry.health.outage_predicted.v1",
	"io.ferry.ingest.drain_command.v1",
	"io.ferry.ingest.draining.v1",
	"io.ferry.ingest.heartbeat.v1",
	"io.ferry.ingest.host_left.v1",
	"io.ferry.ingest.publisher_attached.v1",
	"io.ferry.ingest.publisher_detached.v1",
	"io.ferry.ingest.pull_command.v1",
	"io.ferry.ingest.stream_ceased.v1",
	"io.ferry.ingest.telemetry.v1",
	"io.ferry.notify.acked.v1",
	"io.ferry.notify.delivered.v1",
	"io.ferry.notify.failed.v1",
	"io.ferry.notify.move_notice.v1",
	"io.ferry.ops.maintenance_cancelled.v1",
	"io.ferry.ops.maintenance_scheduled.v1",
	"io.ferry.placement.migration_completed.v1",
	"io.ferry.placement.migration_failed.v1",
	"io.ferry.placement.reassigned.v1",
	"io.ferry.placement.released.v1",
}

func TestSchemasCompile(t *testing.T) {
	got, err := schemas.Types()
	if err != nil {
		t.Fatalf("Types: %v", err)
	}
	if strings.Join(got, "\n") != strings.Join(wantTypes, "\n") {
		t.Fatalf("schema types:\n got %q\nwant %q", got, wantTypes)
	}
	if err := schemas.CompileAll(); err != nil {
		t.Fatalf("CompileAll: %v", err)
	}
}

// TestSchemaShape checks the conventions every event schema follows: $id
// matches its path, title is its type, it refers to the envelope, pins the
// type, constrains the subject and closes data.
func TestSchemaShape(t *testing.T) {
	err := fs.WalkDir(schemas.FS(), "events", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		t.Run(p, func(t *testing.T) {
			typ, ok := schemas.TypeOfPath(p)
			if !ok {
				t.Fatalf("%s does not map to an event type", p)
			}
			var doc struct {
				ID          string `json:"$id"`
				Title       string `json:"title"`
				Description string `json:"description"`
				Ref         string `json:"$ref"`
				Unevaluated *bool  `json:"unevaluatedProperties"`
				Properties  struct {
					Type    struct{ Const string }   `json:"type"`
					Subject struct{ Pattern string } `json:"subject"`
					Data    struct {
						Type                 string                     `json:"type"`
						AdditionalProperties *bool                      `json:"additionalProperties"`
						Required             []string                   `json:"required"`
						Properties           map[string]json.RawMessage `json:"properties"`
					} `json:"data"`
				} `json:"properties"`
			}
			b, err := fs.ReadFile(schemas.FS(), p)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			switch {
			case doc.ID != schemas.BaseURL+p:
				t.Errorf("$id = %q, want %q", doc.ID, schemas.BaseURL+p)
			case doc.Title != typ:
				t.Errorf("title = %q, want %q", doc.Title, typ)
			case doc.Description == "":
				t.Error("no description")
			case doc.Ref != "../../envelope.v1.json":
				t.Errorf("$ref = %q", doc.Ref)
			case doc.Unevaluated == nil || *doc.Unevaluated:
				t.Error("unevaluatedProperties must be false")
			case doc.Properties.Type.Const != typ:
				t.Errorf("type const = %q, want %q", doc.Properties.Type.Const, typ)
			case !strings.HasPrefix(doc.Properties.Subject.Pattern, `^ferry\.`):
				t.Errorf("subject pattern = %q", doc.Properties.Subject.Pattern)
			case doc.Properties.Data.Type != "object" || doc.Properties.Data.AdditionalProperties == nil ||
				*doc.Properties.Data.AdditionalProperties:
				t.Error("data must be an object with additionalProperties false")
			}
			for _, r := range doc.Properties.Data.Required {
				if _, ok := doc.Properties.Data.Properties[r]; !ok {
					t.Errorf("required %q is not a property", r)
				}
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExamples validates every example: valid-* must pass, invalid-* must
// fail with a reason, at the place the example's name points to.
func TestExamples(t *testing.T) {
	types, err := schemas.Types()
	if err != nil {
		t.Fatal(err)
	}
	valid, invalid := map[string]int{}, map[string]int{}
	err = fs.WalkDir(schemas.FS(), "examples", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		dir, name := path.Split(p)
		typ, ok := schemas.TypeOfPath("events/" + strings.TrimSuffix(strings.TrimPrefix(dir, "examples/"), "/") + ".json")
		if !ok {
			t.Errorf("%s: directory does not name an event type", p)
			return nil
		}
		t.Run(strings.TrimPrefix(p, "examples/"), func(t *testing.T) {
			body, err := fs.ReadFile(schemas.FS(), p)
			if err != nil {
				t.Fatal(err)
			}
			// The example's own type must be the directory's, so an
			// invalid example fails for its stated reason, not a typo.
			var head struct{ Type string }
			if err := json.Unmarshal(body, &head); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if head.Type != typ {
				t.Fatalf("example type %q in directory of %q", head.Type, typ)
			}
			err = schemas.Validate(typ, body)
			switch {
			case strings.HasPrefix(name, "valid-"):
				valid[typ]++
				if err != nil {
					t.Fatalf("valid example rejected: %v", err)
				}
			case strings.HasPrefix(name, "invalid-"):
				invalid[typ]++
				if err == nil {
					t.Fatal("invalid example accepted")
				}
				var se *schemas.Error
				if !errors.As(err, &se) {
					t.Fatalf("error %T is not *schemas.Error: %v", err, err)
				}
				if errors.Is(err, schemas.ErrUnknownType) {
					t.Fatalf("unknown type: %v", err)
				}
				if strings.TrimSpace(se.Reason) == "" {
					t.Fatalf("empty reason: %#v", se)
				}
				if se.Type != typ {
					t.Errorf("error type %q, want %q", se.Type, typ)
				}
				wantPrefix := "/data"
				if strings.Contains(name, "-subject") {
					wantPrefix = "/subject"
				}
				if !strings.HasPrefix(se.Path, wantPrefix) {
					t.Errorf("failed at %q (%s), want under %q", se.Path, se.Reason, wantPrefix)
				}
			default:
				t.Fatalf("example name must start with valid- or invalid-")
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range types {
		if valid[typ] < 1 || invalid[typ] < 2 {
			t.Errorf("%s: %d valid and %d invalid examples, want >= 1 and >= 2", typ, valid[typ], invalid[typ])
		}
	}
}

func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		typ        string
		body       string
		wantPath   string
		wantReason string
		unknown    bool
	}{
		{name: "unknown type", typ: "io.ferry.nope.nothing.v1", body: `{}`, wantPath: "/type", unknown: true},
		{name: "not JSON", typ: "io.ferry.ingest.heartbeat.v1", body: `{"specversion":`, wantPath: ""},
		{name: "missing data", typ: "io.ferry.ingest.heartbeat.v1",
			body:     `{"specversion":"1.0","id":"a","type":"io.ferry.ingest.heartbeat.v1","source":"s","time":"2026-11-23T10:00:00Z"}`,
			wantPath: "", wantReason: "missing property 'data'"},
		{name: "type differs from schema", typ: "io.ferry.ingest.heartbeat.v1",
			body:     `{"specversion":"1.0","id":"a","type":"io.ferry.ingest.draining.v1","source":"s","time":"2026-11-23T10:00:00Z","data":{"host":"h","seq":1,"at":"2026-11-23T10:00:00Z"}}`,
			wantPath: "/type"},
		{name: "bad seq", typ: "io.ferry.ingest.heartbeat.v1",
			body:     `{"specversion":"1.0","id":"a","type":"io.ferry.ingest.heartbeat.v1","source":"s","time":"2026-11-23T10:00:00Z","data":{"host":"h","seq":"1","at":"2026-11-23T10:00:00Z"}}`,
			wantPath: "/data/seq"},
		{name: "extra envelope attribute", typ: "io.ferry.ingest.heartbeat.v1",
			body:     `{"specversion":"1.0","id":"a","type":"io.ferry.ingest.heartbeat.v1","source":"s","time":"2026-11-23T10:00:00Z","data":{"host":"h","seq":1,"at":"2026-11-23T10:00:00Z"},"x":1}`,
			wantPath: "/x", wantReason: "property not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := schemas.Validate(tc.typ, []byte(tc.body))
			var se *schemas.Error
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want *schemas.Error", err)
			}
			if se.Path != tc.wantPath || se.Reason == "" {
				t.Errorf("path %q reason %q, want path %q and a reason", se.Path, se.Reason, tc.wantPath)
			}
			if tc.wantReason != "" && se.Reason != tc.wantReason {
				t.Errorf("reason %q, want %q", se.Reason, tc.wantReason)
			}
			if errors.Is(err, schemas.ErrUnknownType) != tc.unknown {
				t.Errorf("errors.Is(ErrUnknownType) = %v, want %v", !tc.unknown, tc.unknown)
			}
		})
	}
}
