package goplugin_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/goplugin"
)

// Two go-plugin plugin processes (this test binary serves the Tester plugin over net/rpc) as
// the workers of a pool: a call gets the dispensed interface from whichever is free.
func ExampleCall() {
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{
		Workers:     2,
		Command:     []string{os.Args[0], "plugin"}, // the plugin's binary
		TaskTimeout: 10 * time.Second,               // past it (and CancelGrace), the plugin is killed
		Plugin:      goplugin.New(goplugin.Config{Handshake: handshake, Plugins: plugins}),
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	err = goplugin.Call(ctx, pool, "tester", func(ctx context.Context, t Tester) error {
		reply, err := t.Echo("hello from a plugin")
		fmt.Println(reply)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(pool.Workers()), "plugins")
	// Output:
	// hello from a plugin
	// 2 plugins
}
