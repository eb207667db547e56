//go:build !unix

package child

import "github.com/supervise-dev/supervise/channel"

func openProgress() *channel.ProgressPage { return nil }
