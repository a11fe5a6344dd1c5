package notifier_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ferrystream/ferry/services/notifier"
)

func TestLoadFlagErrorsHelpAndVersion(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	var out bytes.Buffer
	if _, err := notifier.Load([]string{"--nope"}, noEnv, &out); err == nil || err.Error() != "--nope: unknown flag (see ferry-notifier -h)" || out.Len() != 0 {
		t.Fatalf("unknown flag: %v %q", err, out.String())
	}
	out.Reset()
	if _, err := notifier.Load([]string{"-h"}, noEnv, &out); !errors.Is(err, notifier.ErrHelp) ||
		!strings.HasPrefix(out.String(), "ferry-notifier delivers move notices") || !strings.Contains(out.String(), "\n  --nats string\n") {
		t.Fatalf("help: %v %q", err, out.String())
	}
	out.Reset()
	if _, err := notifier.Load([]string{"--version"}, noEnv, &out); !errors.Is(err, notifier.ErrHelp) || !strings.HasPrefix(out.String(), "ferry-notifier ") ||
		!strings.Contains(out.String(), "(commit ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
}
