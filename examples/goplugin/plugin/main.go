// Command plugin is the Greeter plugin of examples/goplugin: a plain hashicorp/go-plugin
// plugin that knows nothing of supervise.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/supervise-dev/supervise/examples/goplugin/shared"
)

type greeter struct{ log hclog.Logger }

func (g greeter) Greet(name string) (string, error) {
	g.log.Info("greeting", "name", name)
	return fmt.Sprintf("hello %s, from plugin pid %d", name, os.Getpid()), nil
}

// Work is stuck for ms milliseconds: nothing over net/rpc can interrupt it.
func (g greeter) Work(ms int) (string, error) {
	g.log.Warn("working", "ms", ms)
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return "done", nil
}

func main() {
	log := hclog.New(&hclog.LoggerOptions{Name: "greeter", Output: os.Stderr, JSONFormat: true, Level: hclog.Debug})
	cfg := &plugin.ServeConfig{HandshakeConfig: shared.Handshake,
		Plugins: plugin.PluginSet{"greeter": &shared.GreeterPlugin{Impl: greeter{log}}}}
	if os.Getenv(shared.ProtocolEnv) == "grpc" {
		cfg.GRPCServer = plugin.DefaultGRPCServer
	}
	plugin.Serve(cfg)
}
