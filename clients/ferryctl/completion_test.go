package ferryctl_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestCompletionBash loads the generated script into bash and completes a
// few command lines with it.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	r := mustCtl(t, "", "completion", "bash")
	script := filepath.Join(t.TempDir(), "ferryctl.bash")
	if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words   []string // the command line, the last word being completed
		want    []string
		notWant []string
	}{
		{[]string{"ferryctl", "ma"}, []string{"maintenance"}, []string{"status"}},
		{[]string{"ferryctl", ""}, []string{"status", "probe", "dev", "version", "completion"}, nil},
		{[]string{"ferryctl", "maintenance", "s"}, []string{"schedule"}, []string{"list"}},
		{[]string{"ferryctl", "maintenance", "schedule", "ingest-1", "--"}, []string{"--in", "--at", "--for", "--reason", "--nats"}, []string{"--max-gap"}},
		{[]string{"ferryctl", "--nats", "nats://x:4222", "probe", "rtsp://x/y", "--m"}, []string{"--max-gap"}, nil},
		{[]string{"ferryctl", "dev", "--"}, []string{"--origins", "--udp", "--publishers"}, nil},
		{[]string{"ferryctl", "completion", ""}, []string{"bash", "zsh"}, nil},
	} {
		t.Run(strings.Join(tc.words, " "), func(t *testing.T) {
			var quoted []string
			for _, w := range tc.words {
				quoted = append(quoted, "'"+w+"'")
			}
			prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
				strconv.Itoa(len(tc.words)-1) + "\n_ferryctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
			out, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("completions %v lack %q", got, w)
				}
			}
			for _, w := range tc.notWant {
				if slices.Contains(got, w) {
					t.Errorf("completions %v include %q", got, w)
				}
			}
		})
	}
}
