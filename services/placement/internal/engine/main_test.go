package engine

import (
	"os"
	"testing"
)

var testLogEnabled bool

func TestMain(m *testing.M) {
	testLogEnabled = os.Getenv("FERRY_TEST_LOG") != ""
	os.Exit(m.Run())
}
