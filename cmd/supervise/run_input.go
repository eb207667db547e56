package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
)

// inputLine is one line of stdin: its number, its payload, its size in bytes, or why it
// cannot be a task.
type inputLine struct {
	n       int
	payload msgpack.RawMessage
	size    int
	text    []byte // with --joblog: the line's first 1,000 bytes
	err     error  // this line cannot be a task
	fatal   bool   // err is a read error: no more lines
}

// readLines sends every line of in, made a payload, until EOF, a read error, or ctx ends.
// Lines go in batches of up to 256 lines or 1 MiB, so that small lines cost one channel
// operation per batch while big ones are not read far ahead of the pool.
func readLines(ctx context.Context, in io.Reader, asJSON, keepText bool, out chan<- []inputLine) {
	defer close(out)
	r := bufio.NewReaderSize(in, 256<<10)
	var batch []inputLine
	held := 0 // bytes in batch
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		select {
		case out <- batch:
			batch, held = nil, 0
			return true
		case <-ctx.Done():
			return false
		}
	}
	defer flush()
	for n := 1; ; n++ {
		// A batch goes when full, or when reading on would block: a line typed or piped
		// slowly (tail -f) is not held back waiting for more.
		if len(batch) >= 256 || held >= 1<<20 || r.Buffered() == 0 {
			if !flush() {
				return
			}
		}
		line, err := r.ReadBytes('\n')
		if len(line) == 0 && err != nil {
			if err != io.EOF {
				batch = append(batch, inputLine{n: n, err: fmt.Errorf("reading stdin at line %d: %w", n, err), fatal: true})
			}
			return
		}
		size := len(line)
		line = bytes.TrimSuffix(line, []byte{'\n'})
		it := inputLine{n: n, size: size}
		if keepText { // for the job log: its first 1,000 bytes, not the whole read buffer
			it.text = bytes.Clone(line[:min(len(line), 1000)])
		}
		if asJSON {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			it.payload, it.err = jsonToMsgpack(line)
		} else {
			it.payload = channel.StringValue(line)
		}
		batch = append(batch, it)
		held += size
	}
}

// jsonToMsgpack converts one JSON value; whole numbers become integers.
func jsonToMsgpack(line []byte) (msgpack.RawMessage, error) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if d.More() {
		return nil, errors.New("not JSON: more than one value on the line")
	}
	v, err := numbers(v)
	if err != nil {
		return nil, err
	}
	return channel.Marshal(v)
}

// numbers turns the JSON numbers in v into int64 or uint64 where they are whole, float64
// otherwise; a whole number beyond 64 bits is an error, not a float that rounds it.
func numbers(v any) (any, error) {
	var err error
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u, nil
		}
		if !strings.ContainsAny(string(v), ".eE") { // a whole number that no integer holds
			return nil, fmt.Errorf("the integer %s does not fit in 64 bits (write it as a string, or as %s.0 for a float)", v, v)
		}
		return v.Float64()
	case []any:
		for i := range v {
			if v[i], err = numbers(v[i]); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		for k := range v {
			if v[k], err = numbers(v[k]); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

// resultLine renders a result payload as one output line (without its newline).
func resultLine(raw msgpack.RawMessage, asJSON bool) ([]byte, error) {
	if len(raw) == 0 {
		raw = msgpack.RawMessage{0xc0}
	}
	if !asJSON {
		if b, ok := channel.StrOrBin(raw); ok {
			return b, nil
		}
	}
	var v any
	if err := channel.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("the result cannot be printed as JSON: %w", err)
	}
	return b, nil
}
