package events

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/schemas"
)

const testSource = "ferry/test/events"

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// decodeAs adapts DecodeAs[T] to a table entry.
func decodeAs[T Data](body []byte) (Data, error) {
	_, d, err := DecodeAs[T](body)
	return d, err
}

type fixture struct {
	// data sets every field (checked by TestFixturesAreComplete), so the
	// schema sees every property the Go type can emit.
	data   Data
	decode func([]byte) (Data, error)
	// rekey returns data with a different business key.
	rekey func(Data) Data
}

var (
	caps  = Capabilities{CanMove: true, Channels: []string{"nats", "webhook"}, WebhookURL: "https://agent.example.net/ferry/notice"}
	steps = []StepTiming{
		{Step: "decided", At: at(0), SinceStartMS: 0},
		{Step: "notice_acked", At: at(180 * time.Millisecond), SinceStartMS: 180.4},
		{Step: "publisher_attached", At: at(912345678), SinceStartMS: 912.345678},
	}
)

const mig = "mig-01JDQ7ZK3V8Y2W"

func fixtures() []fixture {
	outcome := func(o, ch string, attempts int) NoticeOutcome {
		return NoticeOutcome{NoticeID: "ntc-1", MigrationID: mig, Stream: "cam-lobby", ClientID: "agent-lobby",
			Channel: ch, Attempts: attempts, Reason: "reason for " + o, At: at(180 * time.Millisecond), Outcome: o}
	}
	rekeyOutcome := func(d Data) Data { x := d.(NoticeOutcome); x.NoticeID = "ntc-2"; return x }
	return []fixture{
		{data: MaintenanceScheduled{MaintenanceID: "mw-1", Host: "ingest-2", StartAt: at(2 * time.Minute), EndAt: at(32 * time.Minute),
			Reason: "kernel upgrade", RequestedBy: "alice@ops"},
			decode: decodeAs[MaintenanceScheduled],
			rekey:  func(d Data) Data { x := d.(MaintenanceScheduled); x.MaintenanceID = "mw-2"; return x }},
		{data: MaintenanceCancelled{MaintenanceID: "mw-1", Host: "ingest-2", Reason: "postponed"},
			decode: decodeAs[MaintenanceCancelled],
			rekey:  func(d Data) Data { x := d.(MaintenanceCancelled); x.MaintenanceID = "mw-2"; return x }},
		{data: Draining{Host: "ingest-2", Deadline: at(90 * time.Second), Reason: "SIGTERM", Streams: 14},
			decode: decodeAs[Draining],
			rekey:  func(d Data) Data { x := d.(Draining); x.Deadline = x.Deadline.Add(time.Minute); return x }},
		{data: HostLeft{Host: "ingest-2", Reason: "drain command", StreamsLeft: 1, StartedAt: at(-2 * time.Hour), At: at(1340 * time.Millisecond)},
			decode: decodeAs[HostLeft],
			rekey:  func(d Data) Data { x := d.(HostLeft); x.At = x.At.Add(time.Nanosecond); return x }},
		{data: PublisherAttached{Stream: "cam-lobby", Host: "ingest-3", SessionID: "sess-7f3a9c", ClientID: "agent-lobby",
			Capabilities: caps, MigrationID: mig, Mode: "push", At: at(912345678)},
			decode: decodeAs[PublisherAttached],
			rekey:  func(d Data) Data { x := d.(PublisherAttached); x.Host = "ingest-4"; return x }},
		{data: PublisherDetached{Stream: "cam-lobby", Host: "ingest-2", SessionID: "sess-7f3a9c", ClientID: "agent-lobby",
			MigrationID: mig, Reason: "ceased after migration", At: at(1340 * time.Millisecond)},
			decode: decodeAs[PublisherDetached],
			rekey:  func(d Data) Data { x := d.(PublisherDetached); x.At = x.At.Add(time.Nanosecond); return x }},
		{data: StreamCeased{Stream: "cam-lobby", Host: "ingest-2", NewHost: "ingest-3", MigrationID: mig, ReadersRelayed: 3,
			At: at(1340 * time.Millisecond)},
			decode: decodeAs[StreamCeased],
			rekey:  func(d Data) Data { x := d.(StreamCeased); x.MigrationID = "mig-other"; return x }},
		{data: Telemetry{Host: "ingest-2", At: at(5 * time.Second), CPUSeconds: 5123.42, CPUPercent: 137.5, MemBytes: 1503238553,
			MemLimit: 2147483648, FDs: 812, FDLimit: 1024, Goroutines: 1450, Publishers: 14, Readers: 96, Streams: 14,
			BitrateIn: 56000000, BitrateOut: 384000000, RTPLost: 17, WriteErrors: 2, Errors: 5,
			DiskBytes: 21474836480, DiskLimit: 107374182400},
			decode: decodeAs[Telemetry],
			rekey:  func(d Data) Data { x := d.(Telemetry); x.At = x.At.Add(5 * time.Second); return x }},
		{data: Heartbeat{Host: "ingest-1", Seq: 7, At: at(0)},
			decode: decodeAs[Heartbeat],
			rekey:  func(d Data) Data { x := d.(Heartbeat); x.Seq++; return x }},
		{data: EdgeSwitched{Stream: "cam-lobby", Edge: "edge-1", FromHost: "ingest-2", ToHost: "ingest-3", MigrationID: mig,
			Mode: "sequence", FramesMissing: 1, Duplicates: 12, GapMS: 0.8, At: at(1105 * time.Millisecond)},
			decode: decodeAs[EdgeSwitched],
			rekey:  func(d Data) Data { x := d.(EdgeSwitched); x.Edge = "edge-2"; return x }},
		{data: OutagePredicted{PredictionID: "pred-1", Host: "ingest-2", Cause: "memory", ExpectedOfflineAt: at(250 * time.Second),
			Confidence: 0.87, Evidence: map[string]any{"mem_bytes": 1503238553.0, "slope_bytes_per_s": 2621440.5, "window": "5m",
				"near_limit": true}, Revision: 2, Labels: map[string]string{"zone": "eu-west-1a"}},
			decode: decodeAs[OutagePredicted],
			rekey:  func(d Data) Data { x := d.(OutagePredicted); x.Revision++; return x }},
		{data: OutageCleared{PredictionID: "pred-1", Host: "ingest-2", Cause: "memory", Reason: "memory fell below 60% of limit", Revision: 2},
			decode: decodeAs[OutageCleared],
			rekey:  func(d Data) Data { x := d.(OutageCleared); x.PredictionID = "pred-2"; return x }},
		{data: HostDown{Host: "ingest-4", LastSeen: at(-7600 * time.Millisecond), DetectedAt: at(100 * time.Millisecond),
			Reason: "heartbeat silence"},
			decode: decodeAs[HostDown],
			rekey:  func(d Data) Data { x := d.(HostDown); x.LastSeen = x.LastSeen.Add(time.Second); return x }},
		{data: Reassigned{MigrationID: mig, Stream: "cam-lobby", FromHost: "ingest-2", ToHost: "ingest-3",
			ToURL: "rtsp://10.0.1.13:8554/cam-lobby", Epoch: 5, Deadline: at(2 * time.Minute), Reason: "maintenance",
			SessionID: "sess-7f3a9c", ClientID: "agent-lobby", Mode: "push"},
			decode: decodeAs[Reassigned],
			rekey:  func(d Data) Data { x := d.(Reassigned); x.MigrationID = "mig-other"; return x }},
		{data: MigrationCompleted{MigrationID: mig, Stream: "cam-lobby", FromHost: "ingest-2", ToHost: "ingest-3", Steps: steps,
			DurationMS: 1340.9, MakeBeforeBreak: true},
			decode: decodeAs[MigrationCompleted],
			rekey:  func(d Data) Data { x := d.(MigrationCompleted); x.MigrationID = "mig-other"; return x }},
		{data: MigrationFailed{MigrationID: mig, Stream: "cam-lobby", FromHost: "ingest-2", ToHost: "ingest-3", Step: "notice_acked",
			Reason: "no ack before deadline", Steps: steps[:1]},
			decode: decodeAs[MigrationFailed],
			rekey:  func(d Data) Data { x := d.(MigrationFailed); x.MigrationID = "mig-other"; return x }},
		{data: Released{Stream: "cam-lobby", Host: "ingest-2", Epoch: 3, Mode: "push", SessionID: "sess-7f3a9c", ClientID: "agent-lobby",
			IdleSince: at(-10 * time.Minute), Reason: "no publisher attached for 10m0s", At: at(200 * time.Millisecond)},
			decode: decodeAs[Released],
			rekey:  func(d Data) Data { x := d.(Released); x.Epoch++; return x }},
		{data: MoveNotice{NoticeID: "ntc-1", MigrationID: mig, ClientID: "agent-lobby", Stream: "cam-lobby", SessionID: "sess-7f3a9c",
			FromHost: "ingest-2", ToHost: "ingest-3", NewURL: "rtsp://10.0.1.13:8554/cam-lobby?token=eyJzIjoiY2FtIn0.5Qm3",
			OfflineAt: at(2 * time.Minute), Reason: "maintenance"},
			decode: decodeAs[MoveNotice],
			rekey:  func(d Data) Data { x := d.(MoveNotice); x.NoticeID = "ntc-2"; return x }},
		{data: outcome("delivered", "nats", 1), decode: decodeAs[NoticeOutcome], rekey: rekeyOutcome},
		{data: outcome("acked", "webhook", 2), decode: decodeAs[NoticeOutcome], rekey: rekeyOutcome},
		{data: outcome("failed", "sse", 5), decode: decodeAs[NoticeOutcome], rekey: rekeyOutcome},
		{data: DrainCommand{CommandID: "cmd-1", Host: "ingest-2", GraceSeconds: 90, Reason: "deploy"},
			decode: decodeAs[DrainCommand],
			rekey:  func(d Data) Data { x := d.(DrainCommand); x.CommandID = "cmd-2"; return x }},
		{data: PullCommand{CommandID: "cmd-1", Host: "ingest-3", Stream: "cam-gate",
			SourceURL: "rtsp://192.168.10.21:554/Streaming/Channels/101", MigrationID: mig, Stop: true},
			decode: decodeAs[PullCommand],
			rekey:  func(d Data) Data { x := d.(PullCommand); x.CommandID = "cmd-2"; return x }},
	}
}

func TestFixturesCoverTypes(t *testing.T) {
	got := map[string]bool{}
	for _, f := range fixtures() {
		typ := f.data.EventType()
		if got[typ] {
			t.Errorf("two fixtures of %s", typ)
		}
		got[typ] = true
	}
	for typ, zero := range Types() {
		if !got[typ] {
			t.Errorf("no fixture for %s", typ)
		}
		if zero.EventType() != typ {
			t.Errorf("Types()[%s] is a %T of type %s", typ, zero, zero.EventType())
		}
	}
	if len(got) != len(Types()) {
		t.Errorf("%d fixtures for %d types", len(got), len(Types()))
	}
}

// TestFixturesAreComplete: every field of every fixture is set, so marshalling
// it shows the schema every property (a new Go field without a schema change
// fails TestMarshalValidates).
func TestFixturesAreComplete(t *testing.T) {
	var check func(t *testing.T, path string, v reflect.Value)
	check = func(t *testing.T, path string, v reflect.Value) {
		t.Helper()
		for i := range v.NumField() {
			f, fv := v.Type().Field(i), v.Field(i)
			if !f.IsExported() {
				continue
			}
			if fv.IsZero() {
				t.Errorf("%s.%s is not set", path, f.Name)
			}
			if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeFor[time.Time]() {
				check(t, path+"."+f.Name, fv)
			}
		}
	}
	for _, f := range fixtures() {
		t.Run(f.data.EventType(), func(t *testing.T) {
			check(t, reflect.TypeOf(f.data).Name(), reflect.ValueOf(f.data))
		})
	}
}

func TestMarshalValidates(t *testing.T) {
	for _, f := range fixtures() {
		t.Run(f.data.EventType(), func(t *testing.T) {
			env, body, err := Marshal(testSource, f.data)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if env.Type != f.data.EventType() || env.Subject != f.data.EventSubject() || env.ID != ID(f.data) ||
				env.Source != testSource || env.SpecVersion != SpecVersion {
				t.Errorf("envelope %+v", env)
			}
			if err := schemas.Validate(env.Type, body); err != nil {
				t.Errorf("schemas.Validate: %v", err)
			}
		})
	}
}

// TestMarshalRequiredOnly: with every omitempty field left zero the event is
// still valid, and the Go type and the schema agree on what is optional.
func TestMarshalRequiredOnly(t *testing.T) {
	for _, f := range fixtures() {
		typ := f.data.EventType()
		t.Run(typ, func(t *testing.T) {
			required := schemaData(t, typ).Required
			v := reflect.New(reflect.TypeOf(f.data)).Elem()
			v.Set(reflect.ValueOf(f.data))
			for i := range v.NumField() {
				name, optional := jsonField(v.Type().Field(i))
				if optional && !slices.Contains(required, name) {
					v.Field(i).SetZero()
				}
			}
			d := v.Interface().(Data)
			_, body, err := Marshal(testSource, d)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := f.decode(body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, d) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, d)
			}
		})
	}
}

func TestDecodeAsRoundTrip(t *testing.T) {
	for _, f := range fixtures() {
		t.Run(f.data.EventType(), func(t *testing.T) {
			env, body, err := Marshal(testSource, f.data)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := f.decode(body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, f.data) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, f.data)
			}
			denv, err := Decode(body)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if denv.ID != env.ID || denv.Type != env.Type || denv.Subject != env.Subject || !denv.Time.Equal(env.Time) {
				t.Errorf("Decode envelope %+v, want %+v", denv, env)
			}
		})
	}
}

func TestDecodeAsWrongType(t *testing.T) {
	_, body, err := Marshal(testSource, Heartbeat{Host: "ingest-1", Seq: 1, At: t0})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = DecodeAs[Draining](body)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Path != "/type" || ve.Type != TypeHeartbeat {
		t.Fatalf("DecodeAs[Draining](heartbeat) = %v, want a ValidationError at /type", err)
	}
}

func TestID(t *testing.T) {
	seen := map[string]string{}
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, f := range fixtures() {
		t.Run(f.data.EventType(), func(t *testing.T) {
			id := ID(f.data)
			if !hex32.MatchString(id) {
				t.Errorf("ID %q is not 32 hex digits", id)
			}
			if again := ID(f.data); again != id {
				t.Errorf("ID not deterministic: %s then %s", id, again)
			}
			other := f.rekey(f.data)
			if other.EventKey() == f.data.EventKey() {
				t.Fatalf("rekey kept key %q", other.EventKey())
			}
			if ID(other) == id {
				t.Errorf("different keys %q and %q give one ID %s", f.data.EventKey(), other.EventKey(), id)
			}
			if prev, dup := seen[id]; dup {
				t.Errorf("ID %s also used by %s", id, prev)
			}
			seen[id] = f.data.EventType()
			// Marshal twice (a retry): same id, though the envelope time differs.
			e1, _, err1 := Marshal(testSource, f.data)
			e2, _, err2 := Marshal(testSource, f.data)
			if err1 != nil || err2 != nil || e1.ID != e2.ID || e1.ID != id {
				t.Errorf("retry ids %s %s (%v %v), want %s", e1.ID, e2.ID, err1, err2, id)
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	valid := func(mut func(m map[string]any)) string {
		t.Helper()
		_, body, err := Marshal(testSource, Heartbeat{Host: "ingest-1", Seq: 7, At: t0})
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		mut(m)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	data := func(m map[string]any) map[string]any { return m["data"].(map[string]any) }
	for _, tc := range []struct {
		name     string
		body     string
		wantType string
		wantPath string
		unknown  bool
	}{
		{name: "not JSON", body: `{"specversion":"1.0",`, wantPath: ""},
		{name: "empty", body: ``, wantPath: ""},
		{name: "JSON array", body: `[1,2]`, wantPath: ""},
		{name: "type not a string", body: `{"type":5}`, wantPath: ""},
		{name: "missing type", body: valid(func(m map[string]any) { delete(m, "type") }), wantPath: "/type"},
		{name: "unknown type", body: valid(func(m map[string]any) { m["type"] = "io.ferry.nope.nothing.v1" }),
			wantType: "io.ferry.nope.nothing.v1", wantPath: "/type", unknown: true},
		{name: "wrong data field type", body: valid(func(m map[string]any) { data(m)["seq"] = "seven" }),
			wantType: TypeHeartbeat, wantPath: "/data/seq"},
		{name: "negative number", body: valid(func(m map[string]any) { data(m)["seq"] = -1 }),
			wantType: TypeHeartbeat, wantPath: "/data/seq"},
		{name: "bad host name", body: valid(func(m map[string]any) { data(m)["host"] = "a b" }),
			wantType: TypeHeartbeat, wantPath: "/data/host"},
		{name: "bad time", body: valid(func(m map[string]any) { data(m)["at"] = "noon" }),
			wantType: TypeHeartbeat, wantPath: "/data/at"},
		{name: "missing data field", body: valid(func(m map[string]any) { delete(data(m), "host") }),
			wantType: TypeHeartbeat, wantPath: "/data"},
		{name: "extra data field", body: valid(func(m map[string]any) { data(m)["extra"] = 1 }),
			wantType: TypeHeartbeat, wantPath: "/data"},
		{name: "data not an object", body: valid(func(m map[string]any) { m["data"] = "x" }),
			wantType: TypeHeartbeat, wantPath: "/data"},
		{name: "missing data", body: valid(func(m map[string]any) { delete(m, "data") }),
			wantType: TypeHeartbeat, wantPath: ""},
		{name: "extra envelope attribute", body: valid(func(m map[string]any) { m["extension"] = "x" }),
			wantType: TypeHeartbeat, wantPath: "/extension"},
		{name: "subject of another event", body: valid(func(m map[string]any) { m["subject"] = subject.Draining("ingest-1") }),
			wantType: TypeHeartbeat, wantPath: "/subject"},
		{name: "wrong specversion", body: valid(func(m map[string]any) { m["specversion"] = "0.3" }),
			wantType: TypeHeartbeat, wantPath: "/specversion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.body))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Decode = %v, want *ValidationError", err)
			}
			if ve.Path != tc.wantPath || ve.Type != tc.wantType || ve.Reason == "" {
				t.Errorf("got type %q path %q reason %q; want type %q path %q", ve.Type, ve.Path, ve.Reason, tc.wantType, tc.wantPath)
			}
			if errors.Is(err, ErrUnknownType) != tc.unknown {
				t.Errorf("errors.Is(err, ErrUnknownType) = %v, want %v", !tc.unknown, tc.unknown)
			}
			// DecodeAs reports the same failure.
			_, _, err2 := DecodeAs[Heartbeat]([]byte(tc.body))
			var ve2 *ValidationError
			if !errors.As(err2, &ve2) || ve2.Path != ve.Path {
				t.Errorf("DecodeAs = %v, want the Decode error %v", err2, err)
			}
		})
	}
}

// TestMarshalRejectsInvalid: Ferry never emits what its consumers would reject.
func TestMarshalRejectsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name     string
		data     Data
		wantPath string
	}{
		{name: "negative streams", data: Draining{Host: "ingest-2", Deadline: t0, Streams: -1}, wantPath: "/data/streams"},
		{name: "bad mode", data: PublisherAttached{Stream: "s", Host: "h", SessionID: "x", Mode: "teleport", At: t0}, wantPath: "/data/mode"},
		{name: "confidence above one", data: OutagePredicted{PredictionID: "p", Host: "h", Cause: "memory", ExpectedOfflineAt: t0,
			Confidence: 1.5, Evidence: map[string]any{}}, wantPath: "/data/confidence"},
		{name: "http url", data: Reassigned{MigrationID: "m", Stream: "s", FromHost: "a", ToHost: "b", ToURL: "http://b/s", Epoch: 1,
			Deadline: t0, Reason: "r", Mode: "push"}, wantPath: "/data/to_url"},
		{name: "unknown outcome", data: NoticeOutcome{NoticeID: "n", MigrationID: "m", Stream: "s", ClientID: "c", Attempts: 1,
			At: t0, Outcome: "lost"}, wantPath: "/data/outcome"},
		{name: "empty host", data: Heartbeat{At: t0}, wantPath: "/data/host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Marshal(testSource, tc.data)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Path != tc.wantPath || ve.Type != tc.data.EventType() {
				t.Fatalf("Marshal = %v, want a ValidationError at %s", err, tc.wantPath)
			}
		})
	}
}

// TestMarshalFillsRequiredCollections: nil evidence and steps go out as {} and [], not null.
func TestMarshalFillsRequiredCollections(t *testing.T) {
	for _, d := range []Data{
		OutagePredicted{PredictionID: "p", Host: "h", Cause: "memory", ExpectedOfflineAt: t0, Confidence: 0.5},
		MigrationFailed{MigrationID: "m", Stream: "s", FromHost: "a", Step: "attached", Reason: "deadline"},
	} {
		env, _, err := Marshal(testSource, d)
		if err != nil {
			t.Fatalf("%s: %v", d.EventType(), err)
		}
		if strings.Contains(string(env.Data), "null") {
			t.Fatalf("%s: data has null: %s", d.EventType(), env.Data)
		}
	}
}

// fakeJS records what Publish hands to JetStream.
type fakeJS struct{ msgs []*nats.Msg }

func (f *fakeJS) PublishMsg(_ context.Context, msg *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	f.msgs = append(f.msgs, msg)
	return &jetstream.PubAck{Stream: "TEST", Sequence: uint64(len(f.msgs))}, nil
}

func TestPublish(t *testing.T) {
	js := &fakeJS{}
	ctx := WithTrace(context.Background(), Trace{Parent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	for _, f := range fixtures() {
		if _, err := Publish(ctx, js, testSource, f.data); err != nil {
			t.Fatalf("Publish %s: %v", f.data.EventType(), err)
		}
	}
	if _, err := Publish(ctx, js, testSource, Heartbeat{Host: "bad host", At: t0}); err == nil {
		t.Fatal("Publish of an invalid event succeeded")
	}
	if len(js.msgs) != len(fixtures()) {
		t.Fatalf("%d messages published, want %d (invalid ones must not reach JetStream)", len(js.msgs), len(fixtures()))
	}
	for i, f := range fixtures() {
		m := js.msgs[i]
		if m.Subject != f.data.EventSubject() || m.Header.Get(HeaderType) != f.data.EventType() ||
			m.Header.Get(HeaderTraceparent) == "" {
			t.Errorf("%s: subject %q headers %v", f.data.EventType(), m.Subject, m.Header)
		}
		got, err := f.decode(m.Data)
		if err != nil || !reflect.DeepEqual(got, f.data) {
			t.Errorf("%s: published body decodes to %#v, %v", f.data.EventType(), got, err)
		}
	}
}

// jsonField returns a struct field's JSON name and whether it is optional.
func jsonField(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	optional := false
	for _, o := range strings.Split(opts, ",") {
		optional = optional || o == "omitempty" || o == "omitzero"
	}
	return name, optional
}

type dataSchema struct {
	Required   []string                   `json:"required"`
	Properties map[string]json.RawMessage `json:"properties"`
}

func schemaData(t *testing.T, typ string) dataSchema {
	t.Helper()
	_, rest, _ := strings.Cut(typ, "io.ferry.")
	dom, ev, _ := strings.Cut(rest, ".")
	p := "events/" + dom + "/" + ev + ".json"
	b, err := fs.ReadFile(schemas.FS(), p)
	if err != nil {
		t.Fatalf("schema of %s: %v", typ, err)
	}
	var doc struct {
		Properties struct {
			Data dataSchema `json:"data"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return doc.Properties.Data
}

// schemaStricter lists fields a schema requires although the Go type marks
// them omitempty (the schema is stricter for that one event type).
var schemaStricter = map[string][]string{
	TypeNoticeFailed: {"reason"}, // a failure must say why
}

// TestNoDrift: the Go types and the schemas describe the same events with the
// same fields, and the same fields are required.
func TestNoDrift(t *testing.T) {
	schemaTypes, err := schemas.Types()
	if err != nil {
		t.Fatal(err)
	}
	var goTypes []string
	for typ := range Types() {
		goTypes = append(goTypes, typ)
	}
	sort.Strings(goTypes)
	if !slices.Equal(goTypes, schemaTypes) {
		t.Fatalf("Types() and schemas differ:\n   go %q\nschema %q", goTypes, schemaTypes)
	}
	for typ, zero := range Types() {
		t.Run(typ, func(t *testing.T) {
			sd := schemaData(t, typ)
			var fields, required []string
			rt := reflect.TypeOf(zero)
			for i := range rt.NumField() {
				name, optional := jsonField(rt.Field(i))
				fields = append(fields, name)
				if !optional || slices.Contains(schemaStricter[typ], name) {
					required = append(required, name)
				}
			}
			var props []string
			for p := range sd.Properties {
				props = append(props, p)
			}
			slices.Sort(fields)
			slices.Sort(props)
			slices.Sort(required)
			want := slices.Sorted(slices.Values(sd.Required))
			if !slices.Equal(fields, props) {
				t.Errorf("fields: go %v, schema %v", fields, props)
			}
			if !slices.Equal(required, want) {
				t.Errorf("required: go %v, schema %v", required, want)
			}
		})
	}
}

// TestSubjectsInAsyncAPI: every subject builder in libs/subject has a channel
// in schemas/asyncapi.yaml, and every channel address comes from a builder.
func TestSubjectsInAsyncAPI(t *testing.T) {
	const h, s, c = "{host}", "{stream}", "{client}"
	builders := map[string]string{
		"MaintenanceScheduled": subject.MaintenanceScheduled(h),
		"MaintenanceCancelled": subject.MaintenanceCancelled(h),
		"Draining":             subject.Draining(h),
		"HostLeft":             subject.HostLeft(h),
		"PublisherAttached":    subject.PublisherAttached(s, h),
		"PublisherDetached":    subject.PublisherDetached(s, h),
		"StreamCeased":         subject.StreamCeased(s, h),
		"EdgeSwitched":         subject.EdgeSwitched(s, "{edge}"),
		"Telemetry":            subject.Telemetry(h),
		"Heartbeat":            subject.Heartbeat(h),
		"OutagePredicted":      subject.OutagePredicted(h),
		"OutageCleared":        subject.OutageCleared(h),
		"HostDown":             subject.HostDown(h),
		"Reassigned":           subject.Reassigned(s),
		"MigrationCompleted":   subject.MigrationCompleted(s),
		"MigrationFailed":      subject.MigrationFailed(s),
		"Released":             subject.Released(s),
		"ClientNotice":         subject.ClientNotice(c),
		"NoticeDelivered":      subject.NoticeDelivered(s),
		"NoticeAcked":          subject.NoticeAcked(s),
		"NoticeFailed":         subject.NoticeFailed(s),
		"NoticeAck":            subject.NoticeAck(c),
		"IngestDrain":          subject.IngestDrain(h),
		"IngestPull":           subject.IngestPull(h),
		"DeadLetter":           subject.DeadLetter(s, "{consumer}"),
		"PlacementHost":        subject.PlacementHost(h, s),
		"PlacementStream":      subject.PlacementStream(s),
		"PlacementChoose":      subject.PlacementChoose,
		"PlacementGet":         subject.PlacementGet,
	}
	b, err := fs.ReadFile(schemas.FS(), "asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, line := range strings.Split(string(b), "\n") {
		if a, ok := strings.CutPrefix(line, "    address: "); ok && a != "null" {
			addrs = append(addrs, a)
		}
	}
	for name, subj := range builders {
		if !slices.Contains(addrs, subj) {
			t.Errorf("subject.%s = %q has no channel in asyncapi.yaml", name, subj)
		}
	}
	for _, a := range addrs {
		found := false
		for _, subj := range builders {
			found = found || subj == a
		}
		if !found {
			t.Errorf("asyncapi.yaml channel %q has no subject builder", a)
		}
	}
	// Each event type's subject is the channel whose message is that type.
	for _, f := range fixtures() {
		typ := f.data.EventType()
		if !strings.Contains(string(b), "name: "+typ+"\n") {
			t.Errorf("no message named %s in asyncapi.yaml", typ)
		}
	}
}
