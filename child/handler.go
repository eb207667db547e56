package child

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
)

// rawHandler is a handler with its types erased: encoded input in, the answer out (with its
// payload encoded, or as raw bytes in Bin).
type rawHandler func(ctx context.Context, in msgpack.RawMessage) (channel.Message, error)

var registry = struct {
	sync.Mutex
	m map[string]rawHandler
}{m: map[string]rawHandler{}}

// Handle registers fn as the handler called name. In and Out are any types msgpack can carry
// (a []byte input travels as msgpack bin and is handed to fn without a copy). A []byte result
// is sent from its own memory, without a copy (a large one may be read by the parent after fn
// has returned): do not modify it after returning it. Registering a name twice panics, as
// http.Handle does. Call Handle before [Main].
func Handle[In, Out any](name string, fn func(ctx context.Context, in In) (Out, error)) {
	if name == "" || fn == nil {
		panic("child.Handle: empty name or nil function")
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[name]; dup {
		panic(fmt.Sprintf("child.Handle: handler %q registered twice", name))
	}
	registry.m[name] = func(ctx context.Context, raw msgpack.RawMessage) (channel.Message, error) {
		var in In
		if err := channel.Unmarshal(raw, &in); err != nil {
			return channel.Message{}, &channel.RemoteError{Type: "decode",
				Message: fmt.Sprintf("handler %q: cannot decode the input as %T: %v", name, in, err)}
		}
		out, err := fn(ctx, in)
		if err != nil {
			return channel.Message{}, err
		}
		if b, ok := any(out).([]byte); ok && b != nil {
			return channel.Message{Bin: b}, nil // sent from the handler's memory
		}
		payload, err := channel.Marshal(out)
		if err != nil {
			return channel.Message{}, &channel.RemoteError{Type: "encode",
				Message: fmt.Sprintf("handler %q: cannot encode the result %T: %v", name, out, err)}
		}
		return channel.Message{Payload: payload}, nil
	}
}

func handlerNames() []string {
	registry.Lock()
	defer registry.Unlock()
	names := make([]string, 0, len(registry.m))
	for n := range registry.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
