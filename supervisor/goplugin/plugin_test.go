package goplugin_test

// The test binary is also the plugin the tests run (over net/rpc or gRPC, as the environment
// says), a host that a test SIGKILLs, and a grandchild that ignores SIGTERM.

import (
	"context"
	"errors"
	"fmt"
	"net/rpc"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var handshake = plugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: "SUPERVISE_GOPLUGIN_TEST", MagicCookieValue: "tester"}

var plugins = plugin.PluginSet{"tester": testerPlugin{}}

const (
	protoEnv      = "GOPLUGIN_TEST_PROTOCOL"   // the protocol the plugin serves
	grandchildEnv = "GOPLUGIN_TEST_GRANDCHILD" // this process is a grandchild
	brokenEnv     = "GOPLUGIN_TEST_BROKEN"     // the plugin exits before its handshake
)

// Tester is the plugin's interface.
type Tester interface {
	Echo(s string) (string, error)
	// Sleep sleeps ms milliseconds (forever if negative) and cannot be cancelled.
	Sleep(ms int) error
	// SleepCtx sleeps ms milliseconds or until ctx ends, on the plugin's side too over gRPC.
	SleepCtx(ctx context.Context, ms int) error
	Pid() (int, error)
	// Grandchild starts a process that ignores SIGTERM, with marker among its arguments.
	Grandchild(marker string) error
	// Crash panics outside the RPC server's goroutine: the process dies with exit status 2.
	Crash() error
	// Grow allocates and touches mib MiB, and keeps them.
	Grow(mib int) error
	// Log logs msg at WARN with the field answer=42, through hclog.
	Log(msg string) error
}

// impl is the plugin's side.
type impl struct{ log hclog.Logger }

var kept [][]byte

func (impl) Echo(s string) (string, error) { return s, nil }
func (impl) Sleep(ms int) error {
	if ms < 0 {
		select {}
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return nil
}
func (impl) SleepCtx(ctx context.Context, ms int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(ms) * time.Millisecond):
		return nil
	}
}
func (impl) Pid() (int, error) { return os.Getpid(), nil }
func (impl) Grandchild(marker string) error {
	cmd := exec.Command(os.Args[0], "grandchild", marker)
	cmd.Env = append(os.Environ(), grandchildEnv+"=1")
	return cmd.Start()
}
func (impl) Crash() error {
	go panic("crashing on purpose") // the runtime writes the panic on file descriptor 2
	select {}
}
func (impl) Grow(mib int) error {
	b := make([]byte, mib<<20)
	for i := range b {
		b[i] = 1
	}
	kept = append(kept, b)
	return nil
}
func (t impl) Log(msg string) error { t.log.Warn(msg, "answer", 42); return nil }

// net/rpc.

type rpcServer struct{ impl impl }

func (s *rpcServer) Echo(in string, out *string) (err error) { *out, err = s.impl.Echo(in); return }
func (s *rpcServer) Sleep(ms int, _ *struct{}) error         { return s.impl.Sleep(ms) }
func (s *rpcServer) Pid(_ int, out *int) (err error)         { *out, err = s.impl.Pid(); return }
func (s *rpcServer) Grandchild(m string, _ *struct{}) error  { return s.impl.Grandchild(m) }
func (s *rpcServer) Crash(_ int, _ *struct{}) error          { return s.impl.Crash() }
func (s *rpcServer) Grow(mib int, _ *struct{}) error         { return s.impl.Grow(mib) }
func (s *rpcServer) Log(msg string, _ *struct{}) error       { return s.impl.Log(msg) }

type rpcClient struct{ c *rpc.Client }

func (c rpcClient) Echo(s string) (out string, err error) {
	err = c.c.Call("Plugin.Echo", s, &out)
	return
}
func (c rpcClient) Sleep(ms int) error { return c.c.Call("Plugin.Sleep", ms, &struct{}{}) }

// SleepCtx cannot be cancelled over net/rpc: it is Sleep.
func (c rpcClient) SleepCtx(_ context.Context, ms int) error { return c.Sleep(ms) }
func (c rpcClient) Pid() (pid int, err error) {
	err = c.c.Call("Plugin.Pid", 0, &pid)
	return
}
func (c rpcClient) Grandchild(m string) error { return c.c.Call("Plugin.Grandchild", m, &struct{}{}) }
func (c rpcClient) Crash() error              { return c.c.Call("Plugin.Crash", 0, &struct{}{}) }
func (c rpcClient) Grow(mib int) error        { return c.c.Call("Plugin.Grow", mib, &struct{}{}) }
func (c rpcClient) Log(msg string) error      { return c.c.Call("Plugin.Log", msg, &struct{}{}) }

// gRPC, without generated code: a hand-written service on protobuf's wrapper messages. Echo,
// Sleep, SleepCtx and Pid only.

const service = "supervise.test.Tester"

func unary[In proto.Message](name string, newIn func() In, f func(context.Context, In) (proto.Message, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := newIn()
		if err := dec(in); err != nil {
			return nil, err
		}
		return f(ctx, in)
	}}
}

func grpcService(t impl) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{ServiceName: service, HandlerType: (*any)(nil), Methods: []grpc.MethodDesc{
		unary("Echo", func() *wrapperspb.StringValue { return new(wrapperspb.StringValue) }, func(_ context.Context, in *wrapperspb.StringValue) (proto.Message, error) {
			s, err := t.Echo(in.Value)
			return wrapperspb.String(s), err
		}),
		unary("Sleep", func() *wrapperspb.Int64Value { return new(wrapperspb.Int64Value) }, func(_ context.Context, in *wrapperspb.Int64Value) (proto.Message, error) {
			return in, t.Sleep(int(in.Value))
		}),
		unary("SleepCtx", func() *wrapperspb.Int64Value { return new(wrapperspb.Int64Value) }, func(ctx context.Context, in *wrapperspb.Int64Value) (proto.Message, error) {
			return in, t.SleepCtx(ctx, int(in.Value))
		}),
		unary("Pid", func() *wrapperspb.Int64Value { return new(wrapperspb.Int64Value) }, func(context.Context, *wrapperspb.Int64Value) (proto.Message, error) {
			pid, err := t.Pid()
			return wrapperspb.Int64(int64(pid)), err
		}),
	}}
}

type grpcClient struct{ c *grpc.ClientConn }

func (c grpcClient) Echo(s string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := c.c.Invoke(context.Background(), "/"+service+"/Echo", wrapperspb.String(s), out)
	return out.Value, err
}
func (c grpcClient) Sleep(ms int) error {
	return c.c.Invoke(context.Background(), "/"+service+"/Sleep", wrapperspb.Int64(int64(ms)), new(wrapperspb.Int64Value))
}
func (c grpcClient) SleepCtx(ctx context.Context, ms int) error {
	return c.c.Invoke(ctx, "/"+service+"/SleepCtx", wrapperspb.Int64(int64(ms)), new(wrapperspb.Int64Value))
}
func (c grpcClient) Pid() (int, error) {
	out := new(wrapperspb.Int64Value)
	err := c.c.Invoke(context.Background(), "/"+service+"/Pid", wrapperspb.Int64(0), out)
	return int(out.Value), err
}

var errNotOverGRPC = errors.New("not served over gRPC by the test plugin")

func (grpcClient) Grandchild(string) error { return errNotOverGRPC }
func (grpcClient) Crash() error            { return errNotOverGRPC }
func (grpcClient) Grow(int) error          { return errNotOverGRPC }
func (grpcClient) Log(string) error        { return errNotOverGRPC }

// testerPlugin serves and dispenses a Tester over either protocol.
type testerPlugin struct{}

func (testerPlugin) Server(*plugin.MuxBroker) (any, error) { return &rpcServer{impl: newImpl()}, nil }
func (testerPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return rpcClient{c}, nil
}
func (testerPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(grpcService(newImpl()), nil)
	return nil
}
func (testerPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return grpcClient{c}, nil
}

func newImpl() impl { return impl{log: logger} }

// logger writes on the plugin's stderr, as a plugin's main sets it up before plugin.Serve
// (which then points os.Stderr at a pipe of its own).
var logger hclog.Logger

// servePlugin is main for the plugin.
func servePlugin() {
	if os.Getenv(brokenEnv) != "" {
		fmt.Fprintln(os.Stderr, "this plugin is broken on purpose")
		os.Exit(4)
	}
	logger = hclog.New(&hclog.LoggerOptions{Name: "tester", Output: os.Stderr, JSONFormat: true, Level: hclog.Trace})
	cfg := &plugin.ServeConfig{HandshakeConfig: handshake, Plugins: plugins}
	if os.Getenv(protoEnv) == string(plugin.ProtocolGRPC) {
		cfg.GRPCServer = plugin.DefaultGRPCServer
	}
	plugin.Serve(cfg)
}

// serveGrandchild is main for a grandchild: it ignores SIGTERM and SIGHUP and waits.
func serveGrandchild() {
	signal.Ignore(syscall.SIGTERM, syscall.SIGHUP)
	select {}
}
