package pooltest

import (
	"os"
	"testing"

	"github.com/supervise-dev/supervise/internal/cgroup"
)

// NeedCgroups skips a test of cgroup containment where this process cannot make cgroups,
// unless SUPERVISE_REQUIRE_CGROUP=1 (CI sets it as root) makes that a failure.
func NeedCgroups(t testing.TB) {
	t.Helper()
	if err := cgroup.Usable(); err != nil {
		if os.Getenv("SUPERVISE_REQUIRE_CGROUP") == "1" {
			t.Fatalf("no cgroups, and SUPERVISE_REQUIRE_CGROUP=1: %v", err)
		}
		t.Skipf("no cgroups here: %v", err)
	}
}
