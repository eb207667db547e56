// Package handshake holds the environment contract between a supervise parent and its workers
// (docs/protocol.md, section 4), shared by the supervisor and child packages.
package handshake

import (
	"os"
	"strconv"
	"time"
)

// Environment variables set by the parent on every worker.
const (
	CookieKey    = "SUPERVISE_MAGIC_COOKIE"
	CookieValue  = "5b0d7a7e2c1f4f0c9d3f3b1e8a6c4d21"
	ProtocolKey  = "SUPERVISE_PROTOCOL"
	MaxFrameKey  = "SUPERVISE_MAX_FRAME"
	HeartbeatKey = "SUPERVISE_HEARTBEAT_MS"
	WorkerIDKey  = "SUPERVISE_WORKER_ID"
	StopGraceKey = "SUPERVISE_STOP_GRACE_MS"
)

// NotWorkerMessage is what a worker prints when started without the cookie.
const NotWorkerMessage = "this program is a supervise worker: start it from a supervise pool " +
	"(the " + CookieKey + " environment variable is not set)"

// DefaultHeartbeat is the heartbeat period when the parent sets none.
const DefaultHeartbeat = time.Second

// Env returns the variables the parent adds to a worker's environment.
func Env(protocol, workerID, maxFrame int, heartbeat, stopGrace time.Duration) []string {
	return []string{
		StopGraceKey + "=" + strconv.FormatInt(stopGrace.Milliseconds(), 10),
		CookieKey + "=" + CookieValue,
		ProtocolKey + "=" + strconv.Itoa(protocol),
		MaxFrameKey + "=" + strconv.Itoa(maxFrame),
		HeartbeatKey + "=" + strconv.FormatInt(heartbeat.Milliseconds(), 10),
		WorkerIDKey + "=" + strconv.Itoa(workerID),
	}
}

// IntEnv reads a positive integer variable, or returns def.
func IntEnv(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return def
}
