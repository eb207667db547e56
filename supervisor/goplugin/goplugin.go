// Package goplugin runs hashicorp/go-plugin plugins as the workers of a supervisor.Pool.
//
// go-plugin starts one plugin process per Client and talks to it over net/rpc or gRPC on a
// socket. It kills only the plugin's pid, never what the plugin started; it leaves the plugin
// running when the host dies; it has no restart policy, no pool, no time or memory limits and
// no CPU figures. Under a supervisor.Pool a plugin gets all of those: the pool owns the process
// (go-plugin's ClientConfig.RunnerFunc hands its start to the pool), so each plugin leads its
// own process group, gets the parent-death signal, is restarted with intensity and backoff,
// killed with its whole group when a call overruns Config.TaskTimeout (only the calls it was
// running fail), over Config.MemoryHardLimit or when its Ping stops answering, and shows in
// Stats with its CPU and RSS. The plugin's hclog lines come out as log/slog records with their
// level and fields.
//
//	pool, err := supervisor.Start(ctx, supervisor.Config{
//		Workers:     2,
//		Command:     []string{"./kv-plugin"},
//		TaskTimeout: 5 * time.Second,
//		Plugin:      goplugin.New(goplugin.Config{Handshake: shared.Handshake, Plugins: shared.Plugins}),
//	})
//	...
//	err = goplugin.Call(ctx, pool, "kv", func(ctx context.Context, kv shared.KV) error {
//		v, err = kv.Get("answer")
//		return err
//	})
//
// A call gets the plugin's dispensed interface (Client.Dispense, done once per worker and
// plugin name), from whichever live worker the pool picks (Call) or from one worker (CallOn).
// net/rpc calls cannot be cancelled: one still running Config.CancelGrace after its time limit
// kills its plugin. gRPC calls that take the context return when it is cancelled.
package goplugin

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/supervise-dev/supervise/internal/logline"
	"github.com/supervise-dev/supervise/supervisor"
)

// Config is what go-plugin's ClientConfig needs to know about the plugins; the process itself
// is supervisor.Config's (Command, Env, Dir).
type Config struct {
	// Handshake must match the plugin's (go-plugin's HandshakeConfig).
	Handshake plugin.HandshakeConfig
	// Plugins are the plugins the workers dispense, by name (go-plugin's PluginSet), for
	// Handshake.ProtocolVersion.
	Plugins plugin.PluginSet
	// VersionedPlugins, if set, negotiates the protocol version instead (see go-plugin).
	VersionedPlugins map[int]plugin.PluginSet
	// AllowedProtocols are those the host accepts. Default: net/rpc and gRPC.
	AllowedProtocols []plugin.Protocol
}

// New returns the supervisor.Plugin that starts go-plugin plugins: set it as
// supervisor.Config.Plugin, with Config.Command the plugin's argv.
func New(cfg Config) supervisor.Plugin {
	if len(cfg.AllowedProtocols) == 0 {
		cfg.AllowedProtocols = []plugin.Protocol{plugin.ProtocolNetRPC, plugin.ProtocolGRPC}
	}
	return &kind{cfg: cfg}
}

type kind struct{ cfg Config }

// Connect starts one plugin through go-plugin's client, with the pool's process as its runner.
func (k *kind) Connect(ctx context.Context, proc *supervisor.Process) (supervisor.PluginConn, error) {
	timeout := time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  k.cfg.Handshake,
		Plugins:          k.cfg.Plugins,
		VersionedPlugins: k.cfg.VersionedPlugins,
		AllowedProtocols: k.cfg.AllowedProtocols,
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			return &procRunner{proc: proc, env: cmd.Env}, nil
		},
		SkipHostEnv:  true, // the pool adds its own environment (Process.Start)
		StartTimeout: timeout,
		Logger:       hclogTo(proc),
		// Once serving, a go-plugin plugin's os.Stdout and os.Stderr are pipes whose lines
		// reach the host over the RPC connection: handled as the process's stderr.
		SyncStdout: proc.Stderr(),
		SyncStderr: proc.Stderr(),
	})
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		return nil, err
	}
	return &conn{client: c, rpc: rpc, dispensed: map[string]any{}}, nil
}

// conn is one plugin worker's go-plugin client.
type conn struct {
	client *plugin.Client
	rpc    plugin.ClientProtocol

	mu        sync.Mutex
	dispensed map[string]any // by plugin name
}

func (c *conn) Client() any  { return c }
func (c *conn) Ping() error  { return c.rpc.Ping() }
func (c *conn) Close() error { c.client.Kill(); return nil }

// dispense returns the plugin called name, dispensed once per worker: with net/rpc every
// Dispense opens a new stream.
func (c *conn) dispense(name string) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.dispensed[name]; ok {
		return v, nil
	}
	v, err := c.rpc.Dispense(name)
	if err != nil {
		return nil, err
	}
	c.dispensed[name] = v
	return v, nil
}

// Call runs fn with the plugin called name, dispensed by whichever live worker of pool the
// pool picks (see supervisor.Pool.Call for time limits and errors). T is the interface the
// plugin's client side returns.
func Call[T any](ctx context.Context, pool *supervisor.Pool, name string, fn func(ctx context.Context, plugin T) error) error {
	return pool.Call(ctx, name, withPlugin(name, fn))
}

// CallOn is Call on one worker (see supervisor.Pool.Workers for their ids).
func CallOn[T any](ctx context.Context, pool *supervisor.Pool, workerID int, name string, fn func(ctx context.Context, plugin T) error) error {
	return pool.CallOn(ctx, workerID, name, withPlugin(name, fn))
}

func withPlugin[T any](name string, fn func(context.Context, T) error) func(context.Context, any) error {
	return func(ctx context.Context, client any) error {
		c, ok := client.(*conn)
		if !ok {
			return fmt.Errorf("goplugin: the pool's workers are not go-plugin plugins (Config.Plugin is %T's)", client)
		}
		raw, err := c.dispense(name)
		if err != nil {
			return fmt.Errorf("goplugin: dispensing %q: %w", name, err)
		}
		p, ok := raw.(T)
		if !ok {
			return fmt.Errorf("goplugin: plugin %q dispensed a %T, which is not a %v", name, raw, reflect.TypeFor[T]())
		}
		return fn(ctx, p)
	}
}

// procRunner is go-plugin's runner for a process the pool starts, waits for and kills.
type procRunner struct {
	proc   *supervisor.Process
	env    []string // go-plugin's: magic cookie, protocol versions, socket directory
	stdout io.Reader
}

func (r *procRunner) Start(context.Context) (err error) {
	r.stdout, err = r.proc.Start(r.env)
	return err
}

// Diagnose adds nothing: the pool's start error carries the plugin's exit status and stderr.
func (r *procRunner) Diagnose(context.Context) string { return "" }

// Stdout carries go-plugin's handshake line. The pool closes it once the process is reaped.
func (r *procRunner) Stdout() io.ReadCloser { return io.NopCloser(r.stdout) }

// Stderr is empty for go-plugin: the pool forwards the plugin's stderr itself, hclog's JSON
// lines with their level and fields, and keeps its tail for errors.
func (r *procRunner) Stderr() io.ReadCloser { return io.NopCloser(strings.NewReader("")) }

func (r *procRunner) Name() string                   { return r.proc.Command()[0] }
func (r *procRunner) ID() string                     { return strconv.Itoa(r.proc.Pid()) }
func (r *procRunner) Wait(ctx context.Context) error { return r.proc.Wait(ctx) }
func (r *procRunner) Kill(context.Context) error     { r.proc.Kill(); return nil }

func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}
func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// hclogTo is the logger go-plugin's client logs to: hclog's JSON lines, turned into records of
// the worker's slog logger.
func hclogTo(proc *supervisor.Process) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "go-plugin",
		Level:      hclog.Debug,
		JSONFormat: true,
		Output:     &logline.Writer{Log: proc.Logger()},
	})
}
