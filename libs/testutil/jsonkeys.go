package testutil

import (
	"encoding/json"
	"fmt"
	"strings"
)

// DuplicateKeys returns the top-level keys that occur more than once in the
// JSON object line (a zerolog line that got a field twice, say).
func DuplicateKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %q", line)
	}
	seen, dup := map[string]bool{}, []string(nil)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k := t.(string)
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return dup, nil
}
