package healthpredict

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ferrystream/ferry/services/healthpredict/internal/predict"
)

// TestReadmeDocumentsEveryKnob keeps the README's settings table in step
// with the code: every key, its default and its description.
func TestReadmeDocumentsEveryKnob(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	c := predict.Default()
	for _, k := range Knobs(&c) {
		row := fmt.Sprintf("| `%s` | `%s` | %s |", k.Key, k.Value(), k.Doc)
		if !strings.Contains(string(b), row) {
			t.Errorf("README lacks the row:\n%s", row)
		}
	}
}
