package mailmap_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Closing a Store must stop everything it started (the LISTEN loop, pools).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
