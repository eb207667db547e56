//go:build !linux

package proctest

import "testing"

// KillAtCleanup does nothing outside Linux, which has no pidfds to signal a process safely
// by: the tests that use it run on Linux.
func KillAtCleanup(testing.TB, int) {}
