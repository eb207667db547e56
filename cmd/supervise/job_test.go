package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// When every task of a --connect run has ended, failing to remove its results from the server
// is a warning, not a failed run: run --connect exited 2 when only that purge timed out.
func TestJobCloseWhenPurgeFails(t *testing.T) {
	srv, err := jetstream.StartServer(jetstream.ServerConfig{})
	must(t, err)
	defer srv.Shutdown()
	nc, err := srv.Connect()
	must(t, err)
	client, err := jetstream.NewClient(context.Background(), nc, jetstream.Config{Queue: "purge"})
	must(t, err)
	nc.Close() // the purge cannot reach the server
	var log bytes.Buffer
	j := &job{nc: nc, client: client, stopMonitor: func() {}, log: slog.New(slog.NewTextHandler(&log, nil))}
	if err := j.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if !strings.Contains(log.String(), "results stay on the server") {
		t.Errorf("no warning logged: %q", log.String())
	}
}
