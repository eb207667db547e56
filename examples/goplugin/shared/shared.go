// Package shared is what the host and the plugin of examples/goplugin agree on: the
// handshake, the Greeter interface, and its net/rpc and gRPC glue (gRPC written by hand on
// protobuf's wrapper messages, so the example needs no protoc).
package shared

import (
	"context"
	"net/rpc"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Handshake is checked by both sides before anything else.
var Handshake = plugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: "GREETER_PLUGIN", MagicCookieValue: "hello"}

// Plugins are the plugins the host can dispense.
var Plugins = plugin.PluginSet{"greeter": &GreeterPlugin{}}

// ProtocolEnv tells the plugin which protocol to serve: "grpc", or net/rpc.
const ProtocolEnv = "GREETER_PROTOCOL"

// Greeter is the plugin's interface.
type Greeter interface {
	Greet(name string) (string, error)
	// Work works for ms milliseconds and cannot be interrupted.
	Work(ms int) (string, error)
}

// GreeterPlugin serves and dispenses a Greeter over net/rpc or gRPC. Impl is set in the
// plugin only.
type GreeterPlugin struct{ Impl Greeter }

// net/rpc.

func (p *GreeterPlugin) Server(*plugin.MuxBroker) (any, error) { return &rpcServer{p.Impl}, nil }
func (*GreeterPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return rpcClient{c}, nil
}

type rpcServer struct{ impl Greeter }

func (s *rpcServer) Greet(name string, out *string) (err error) {
	*out, err = s.impl.Greet(name)
	return
}
func (s *rpcServer) Work(ms int, out *string) (err error) { *out, err = s.impl.Work(ms); return }

type rpcClient struct{ c *rpc.Client }

func (c rpcClient) Greet(name string) (out string, err error) {
	err = c.c.Call("Plugin.Greet", name, &out)
	return
}
func (c rpcClient) Work(ms int) (out string, err error) {
	err = c.c.Call("Plugin.Work", ms, &out)
	return
}

// gRPC.

const service = "examples.Greeter"

func (p *GreeterPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&grpc.ServiceDesc{ServiceName: service, HandlerType: (*any)(nil), Methods: []grpc.MethodDesc{
		{MethodName: "Greet", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			out, err := p.Impl.Greet(in.Value)
			return wrapperspb.String(out), err
		}},
		{MethodName: "Work", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.Int64Value)
			if err := dec(in); err != nil {
				return nil, err
			}
			out, err := p.Impl.Work(int(in.Value))
			return wrapperspb.String(out), err
		}},
	}}, nil)
	return nil
}

func (*GreeterPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return grpcClient{c}, nil
}

type grpcClient struct{ c *grpc.ClientConn }

func (c grpcClient) Greet(name string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := c.c.Invoke(context.Background(), "/"+service+"/Greet", wrapperspb.String(name), out)
	return out.Value, err
}
func (c grpcClient) Work(ms int) (string, error) {
	out := new(wrapperspb.StringValue)
	err := c.c.Invoke(context.Background(), "/"+service+"/Work", wrapperspb.Int64(int64(ms)), out)
	return out.Value, err
}
