// Command goplugin measures the same echo through three channels to worker processes, side by
// side in one run: (a) supervise's msgpack frames over stdin/stdout, (b) hashicorp/go-plugin
// with net/rpc, (c) go-plugin with gRPC, with the same number of worker processes and calls in
// flight per process. It prints tasks/s and MiB/s for each, and how many times faster
// supervise is than each peer (its time over supervise's).
// The binary is its own worker for all three.
//
//	go run ./bench/goplugin [-tasks N] [-size BYTES] [-workers W] [-inflight K]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/rpc"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/goplugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var handshake = plugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: "SUPERVISE_BENCH_GOPLUGIN", MagicCookieValue: "echo"}

// Echoer is the plugin's interface, over net/rpc or gRPC.
type Echoer interface {
	Echo(b []byte) ([]byte, error)
}

// net/rpc.

type echoRPCServer struct{}

func (echoRPCServer) Echo(b []byte, out *[]byte) error { *out = b; return nil }

type echoRPC struct{ c *rpc.Client }

func (e echoRPC) Echo(b []byte) ([]byte, error) {
	var out []byte
	err := e.c.Call("Plugin.Echo", b, &out)
	return out, err
}

// gRPC, without generated code: a hand-written service on protobuf's BytesValue.

type echoGRPCServer struct{}

func (echoGRPCServer) Echo(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return in, nil
}

var echoService = grpc.ServiceDesc{
	ServiceName: "supervise.bench.Echo",
	HandlerType: (*interface {
		Echo(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
	})(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.BytesValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		return srv.(echoGRPCServer).Echo(ctx, in)
	}}},
}

type echoGRPC struct{ c *grpc.ClientConn }

func (e echoGRPC) Echo(b []byte) ([]byte, error) {
	out := new(wrapperspb.BytesValue)
	err := e.c.Invoke(context.Background(), "/supervise.bench.Echo/Echo", wrapperspb.Bytes(b), out)
	return out.GetValue(), err
}

// echoPlugin serves and dispenses the echo over either protocol.
type echoPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (echoPlugin) Server(*plugin.MuxBroker) (any, error) { return echoRPCServer{}, nil }
func (echoPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return echoRPC{c}, nil
}
func (echoPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&echoService, echoGRPCServer{})
	return nil
}
func (echoPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return echoGRPC{c}, nil
}

var plugins = map[string]plugin.Plugin{"echo": echoPlugin{}}

// protoEnv tells a plugin process which protocol to serve.
const protoEnv = "SUPERVISE_BENCH_PROTOCOL"

func main() {
	child.Handle("echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })
	child.Main() // a supervise worker serves here and exits
	if os.Getenv(handshake.MagicCookieKey) == handshake.MagicCookieValue {
		// A go-plugin server speaks gRPC whenever it has a gRPC server and the plugin can: the
		// host says which one this process is for.
		cfg := &plugin.ServeConfig{HandshakeConfig: handshake, Plugins: plugins}
		if os.Getenv(protoEnv) == string(plugin.ProtocolGRPC) {
			cfg.GRPCServer = plugin.DefaultGRPCServer
		}
		plugin.Serve(cfg)
		return
	}
	n := flag.Int("tasks", 20000, "echo calls")
	size := flag.Int("size", 64, "payload bytes")
	workers := flag.Int("workers", 2, "worker processes")
	inflight := flag.Int("inflight", 8, "calls in flight per worker process")
	flag.Parse()

	src := make([]byte, *size+*n) // distinct payloads, made before the clock starts
	rand.Read(src)
	payload := func(i int) []byte { return src[i : i+*size] }

	ours, err := viaSupervise(*n, *workers, *inflight, payload)
	if err != nil {
		log.Fatal(err)
	}
	report := func(name string, d time.Duration) {
		fmt.Printf("%-16s payload=%d workers=%d inflight=%d tasks/s=%.0f MiB/s=%.1f", name, *size, *workers, *inflight,
			float64(*n)/d.Seconds(), float64(*n)*float64(*size)/d.Seconds()/(1<<20))
		if name != "supervise" {
			fmt.Printf(" supervise-faster=%.2fx", d.Seconds()/ours.Seconds())
		}
		fmt.Println()
	}
	report("supervise", ours)
	for _, proto := range []plugin.Protocol{plugin.ProtocolNetRPC, plugin.ProtocolGRPC} {
		d, err := viaGoPlugin(proto, *n, *workers, *inflight, payload)
		if err != nil {
			log.Fatal(err)
		}
		report("go-plugin-"+string(proto), d)
		if d, err = viaPool(proto, *n, *workers, *inflight, payload); err != nil {
			log.Fatal(err)
		}
		report("pool-of-"+string(proto), d)
	}
}

func viaSupervise(n, workers, inflight int, payload func(int) []byte) (time.Duration, error) {
	ctx := context.Background()
	p, err := supervisor.Start(ctx, supervisor.Config{Workers: workers, InFlight: inflight})
	if err != nil {
		return 0, err
	}
	defer p.Close()
	echo := supervisor.Bind[[]byte, []byte](p, "echo")
	if _, err := echo.Call(ctx, nil); err != nil {
		return 0, err
	}
	inputs := func(yield func([]byte) bool) {
		for i := range n {
			if !yield(payload(i)) {
				return
			}
		}
	}
	start := time.Now()
	for r := range echo.MapUnordered(ctx, inputs) {
		if r.Err != nil || !bytes.Equal(r.Value, payload(r.Index)) {
			return 0, fmt.Errorf("supervise: task %d: %v", r.Index, r.Err)
		}
	}
	return time.Since(start), p.Close()
}

func viaGoPlugin(proto plugin.Protocol, n, workers, inflight int, payload func(int) []byte) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	quiet := hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	var echoers []Echoer
	for range workers {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), protoEnv+"="+string(proto))
		c := plugin.NewClient(&plugin.ClientConfig{HandshakeConfig: handshake, Plugins: plugins,
			Cmd: cmd, Logger: quiet, AllowedProtocols: []plugin.Protocol{proto}})
		defer c.Kill()
		rc, err := c.Client()
		if err != nil {
			return 0, err
		}
		raw, err := rc.Dispense("echo")
		if err != nil {
			return 0, err
		}
		e := raw.(Echoer)
		if _, err := e.Echo(nil); err != nil { // warm up
			return 0, err
		}
		echoers = append(echoers, e)
	}
	start := time.Now()
	err = fanOut(n, len(echoers), inflight, func(worker, i int) error {
		out, err := echoers[worker].Echo(payload(i))
		return check(payload(i), out, err)
	})
	if err != nil {
		return 0, fmt.Errorf("go-plugin %s: %w", proto, err)
	}
	return time.Since(start), nil
}

// viaPool is viaGoPlugin with the plugins as the workers of a supervise pool
// (supervisor/goplugin): what the pool's machinery costs per call.
func viaPool(proto plugin.Protocol, n, workers, inflight int, payload func(int) []byte) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: workers, InFlight: inflight,
		Command: []string{self}, Env: []string{protoEnv + "=" + string(proto)},
		Plugin: goplugin.New(goplugin.Config{Handshake: handshake, Plugins: plugins, AllowedProtocols: []plugin.Protocol{proto}}),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	echo := func(i int) error {
		return goplugin.Call(ctx, pool, "echo", func(_ context.Context, e Echoer) error {
			out, err := e.Echo(payload(i))
			return check(payload(i), out, err)
		})
	}
	if err := echo(0); err != nil { // warm up: dispense
		return 0, err
	}
	start := time.Now()
	if err := fanOut(n, workers, inflight, func(_, i int) error { return echo(i) }); err != nil {
		return 0, fmt.Errorf("pool of go-plugin %s: %w", proto, err)
	}
	return time.Since(start), pool.Close()
}

// check is an echo's check: want came back.
func check(want, out []byte, err error) error {
	if err == nil && !bytes.Equal(out, want) {
		err = fmt.Errorf("an echo of %d bytes returned %d other bytes", len(want), len(out))
	}
	return err
}

// fanOut calls do(worker, i) for i in [0, n) from inflight goroutines per worker, and returns
// the first error.
func fanOut(n, workers, inflight int, do func(worker, i int) error) error {
	jobs := make(chan int, 1024)
	errs := make(chan error, workers*inflight)
	var wg sync.WaitGroup
	for w := range workers {
		for range inflight {
			wg.Go(func() {
				for i := range jobs {
					if err := do(w, i); err != nil {
						errs <- err
						for range jobs { // drain
						}
						return
					}
				}
			})
		}
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
