package jetstream

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/supervisor"
)

// delivery is one message a machine took from the tasks stream: a lone task, or a batch of
// them (docs/protocol.md, section 11).
type delivery struct {
	msg    natsjs.Msg
	number uint64 // its delivery count: 1 the first time
	run    string
	batch  uint64 // the batch's number; 0: a lone task
	tasks  []channel.Message
	sealTo *[32]byte // the run's key, to seal outcomes and reports to; nil: in the clear
	from   string    // where it came from, for logs and dead letters
}

// open reads a delivered message. One that is not a task or a batch of tasks of the protocol
// goes to the dead letters and is terminated: ok is false.
func (m *machine) open(ctx context.Context, msg natsjs.Msg) (d *delivery, ok bool) {
	meta, err := msg.Metadata()
	if err != nil { // not from a consumer: cannot happen with Fetch
		m.cfg.Logger.Error("jetstream: a task without metadata", "err", err)
		return nil, false
	}
	d = &delivery{msg: msg, number: meta.NumDelivered, run: msg.Headers().Get(headerRun),
		from: fmt.Sprintf("%s #%d (delivery %d)", msg.Subject(), meta.Sequence.Stream, meta.NumDelivered)}
	if err = d.parse(); err != nil {
		m.s.deadLetter(ctx, msg.Data(), d.from, "malformed task: "+err.Error())
		msg.Term()
		return nil, false
	}
	return d, true
}

func (d *delivery) parse() error {
	h := d.msg.Headers()
	if d.run == "" {
		return fmt.Errorf("no %s header", headerRun)
	}
	var err error
	if key := h.Get(headerSeal); key != "" {
		if d.sealTo, err = parseKey(key); err != nil {
			return err
		}
	}
	if num := h.Get(headerBatch); num != "" {
		if d.batch, err = strconv.ParseUint(num, 10, 64); err != nil || d.batch == 0 {
			return fmt.Errorf("%s %q: not a batch number (1 or more)", headerBatch, num)
		}
		d.tasks, err = channel.ParseBatch(d.msg.Data())
	} else {
		var call channel.Message
		call, err = channel.ParseMessage(d.msg.Data())
		d.tasks = []channel.Message{call}
	}
	if err != nil {
		return err
	}
	for i, call := range d.tasks {
		if call.Kind != channel.KindCall || call.Name == "" {
			return fmt.Errorf("message %d: a %s message, not a call with a handler name", i, call.Kind)
		}
		if i > 0 && call.ID <= d.tasks[i-1].ID {
			return fmt.Errorf("message %d: task id %d after %d: a batch's ids ascend", i, call.ID, d.tasks[i-1].ID)
		}
	}
	return nil
}

// unrecorded are the positions of d's tasks that no earlier delivery recorded an outcome
// for. (A lookup that fails counts as none recorded: the task runs again, and its submitter
// takes the first outcome it reads.)
func (m *machine) unrecorded(ctx context.Context, d *delivery) []int {
	if d.batch == 0 {
		if d.number > 1 && m.s.recorded(ctx, m.cfg.resultSubject(d.run, d.tasks[0].ID)) {
			return nil
		}
		return []int{0}
	}
	var done []byte
	for earlier := uint64(1); earlier < d.number; earlier++ {
		msg, err := m.s.results.GetLastMsgForSubject(ctx, m.cfg.batchResultSubject(d.run, d.batch, earlier, 0))
		if err == nil {
			done = orBits(done, msg.Header.Get(headerDone), len(d.tasks))
		}
	}
	var todo []int
	for i := range d.tasks {
		if i/8 >= len(done) || done[i/8]&(1<<(i%8)) == 0 {
			todo = append(todo, i)
		}
	}
	return todo
}

// orBits adds the positions of a Supervise-Done header (a bit set, bit i for the batch's
// i-th task, in unpadded base64url) to done; a malformed one adds none.
func orBits(done []byte, header string, n int) []byte {
	bits, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil || len(bits) > (n+7)/8 {
		return done
	}
	if len(done) < len(bits) {
		done = append(done, make([]byte, len(bits)-len(done))...)
	}
	for i, b := range bits {
		done[i] |= b
	}
	return done
}

// settle stores the outcomes of a delivery's tasks that are outcomes, and then acks the
// delivery, or hands it back for the tasks that are to run again.
func (m *machine) settle(ctx context.Context, d *delivery, ends []taskEnd, took time.Duration) {
	last := d.number >= uint64(m.cfg.MaxDeliver)
	var (
		record          []taskEnd
		back, stopping  bool
		poison, allGone = false, true
	)
	for _, e := range ends {
		id := d.tasks[e.at].ID
		switch {
		case e.cancelled:
			m.cfg.Logger.Info("jetstream: a task cancelled by its submitter", "from", d.from, "task", id, "err", e.err)
		case e.err != nil && ctx.Err() != nil: // cancelled: this machine is stopping
			back, stopping = true, true
		case e.err != nil && handBack(e.err) && !last:
			m.cfg.Logger.Info("jetstream: handing back a task whose worker died", "from", d.from, "task", id, "err", e.err)
			m.noteDeath(d, id, e.err)
			back = true
		default:
			record = append(record, e)
			poison = poison || e.err != nil && handBack(e.err) // delivered MaxDeliver times, killing its worker each time
			allGone = false
		}
	}
	if len(record) > 0 {
		if err := m.record(ctx, d, record, took); err != nil {
			m.cfg.Logger.Warn("jetstream: storing outcomes failed; the tasks go back", "from", d.from, "err", err)
			d.msg.Nak()
			return
		}
	}
	switch {
	case stopping:
		d.msg.Nak()
	case back:
		d.msg.NakWithDelay(time.Duration(d.number) * 500 * time.Millisecond)
	case poison || allGone:
		d.msg.Term()
	default:
		d.msg.Ack()
	}
}

// noteDeath tells task id's submitter the error of the worker that died under it, before the
// task goes back. A machine takes a delivery for the last by the server's count, which can be
// behind: nats-server 2.9.10 (Debian's) was seen to redeliver a task with a count of 1 on its
// third delivery (a bug like the one nats-server PR 5305 fixed in 2024). The last delivery then
// goes back too, and the server's max-deliveries advisory ends the task at its submitter with
// this error rather than as lost.
func (m *machine) noteDeath(d *delivery, id uint64, err error) {
	if errors.Is(err, supervisor.ErrPoolClosed) || errors.Is(err, supervisor.ErrPoolBroken) {
		return // the machine's trouble, not the task's
	}
	body := channel.AppendMessage(nil, channel.Message{Kind: channel.KindError, ID: id, Err: remoteError(err)})
	if err := m.forward(d, id, body, "died"); err != nil {
		m.cfg.Logger.Warn("jetstream: telling the submitter of a worker's death", "from", d.from, "task", id, "err", err)
	}
}

// record stores the outcomes of the tasks ended.
func (m *machine) record(ctx context.Context, d *delivery, ended []taskEnd, took time.Duration) error {
	envelopes := make([][]byte, len(ended))
	at := make([]int, len(ended))
	reports := make([]int, len(ended))
	for k, e := range ended {
		envelopes[k] = m.outcome(ctx, d.tasks[e.at], e.result, e.err, d.from, d.sealTo != nil)
		at[k], reports[k] = e.at, e.reports
	}
	if d.batch != 0 {
		return m.storeBatch(ctx, d, at, envelopes, reports, took)
	}
	out := nats.NewMsg(m.cfg.resultSubject(d.run, d.tasks[0].ID))
	out.Header.Set(headerWorker, m.name)
	out.Header.Set(headerDeliveries, strconv.FormatUint(d.number, 10))
	out.Header.Set(headerReports, strconv.Itoa(reports[0]))
	if err := m.seal(out, d, envelopes[0]); err != nil {
		return err
	}
	return m.s.storeResult(ctx, out)
}

// storeBatch stores the outcomes a delivery of a batch recorded (envelopes, of the tasks at
// positions at, in order), in parts that each fit a message: parts 1.. first, then part 0,
// which says which tasks the delivery recorded, so that a later delivery of the batch runs
// only the others.
func (m *machine) storeBatch(ctx context.Context, d *delivery, at []int, envelopes [][]byte, reports []int, took time.Duration) error {
	room := m.s.limit - headerRoom - sealOverhead
	var parts [][2]int // [from, to) of envelopes
	for from := 0; from < len(envelopes); {
		to, size := from, 0
		for to < len(envelopes) && to-from < maxBatchTasks && (to == from || size+len(envelopes[to]) <= room-8) {
			size += len(envelopes[to])
			to++
		}
		parts = append(parts, [2]int{from, to})
		from = to
	}
	done := make([]byte, (len(d.tasks)+7)/8)
	for _, i := range at {
		done[i/8] |= 1 << (i % 8)
	}
	for k := len(parts) - 1; k >= 0; k-- { // part 0 last
		from, to := parts[k][0], parts[k][1]
		out := nats.NewMsg(m.cfg.batchResultSubject(d.run, d.batch, d.number, k))
		out.Header.Set(headerWorker, m.name)
		out.Header.Set(headerDeliveries, strconv.FormatUint(d.number, 10))
		out.Header.Set(headerTook, strconv.FormatInt(took.Microseconds(), 10))
		if counts := formatCounts(reports[from:to]); counts != "" {
			out.Header.Set(headerReports, counts)
		}
		if k == 0 {
			out.Header.Set(headerParts, strconv.Itoa(len(parts)))
			out.Header.Set(headerDone, base64.RawURLEncoding.EncodeToString(done))
		}
		if err := m.seal(out, d, channel.JoinBatch(nil, envelopes[from:to]...)); err != nil {
			return err
		}
		if err := m.s.storeResult(ctx, out); err != nil {
			return err
		}
	}
	return nil
}

// seal makes body out's data, sealed to d's run if it asked for it.
func (m *machine) seal(out *nats.Msg, d *delivery, body []byte) error {
	if d.sealTo == nil {
		out.Data = body
		return nil
	}
	sealed, err := m.keys.seal(d.sealTo, d.msg.Data(), body)
	if err != nil {
		return fmt.Errorf("sealing: %w", err)
	}
	out.Header.Set(headerSealedBy, m.keys.pubText)
	out.Data = sealed
	return nil
}

// formatCounts writes counts for a header, separated by commas: "" when all are zero.
func formatCounts(counts []int) string {
	var b strings.Builder
	any := false
	for i, n := range counts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(n))
		any = any || n != 0
	}
	if !any {
		return ""
	}
	return b.String()
}
