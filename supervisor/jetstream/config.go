package jetstream

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/supervise-dev/supervise/channel"
)

// Config names a queue on a JetStream server and how its tasks are delivered. The submitter
// and every worker machine of a queue should use the same values; the zero value is the queue
// "default" with the defaults below. The first to start creates the queue's streams (and a
// machine, its consumer) with them; one that starts with other values of ResultTTL, AckWait
// or MaxDeliver updates them to its own.
type Config struct {
	// Queue names the queue: letters, digits, '-' and '_'. Empty: "default".
	Queue string
	// AckWait is how long a task may go without word from the machine running it (a result,
	// or an in-progress ack, sent every AckWait/4 while it runs) before it is given to
	// another machine. Zero: 30s.
	AckWait time.Duration
	// MaxDeliver is how many times a task is delivered at most: a machine lost, or a worker
	// process that dies on it, costs one delivery; after the last the task fails with its
	// last error. Zero: 5.
	MaxDeliver int
	// ResultTTL is how long results stay on the server for a submitter that is gone. Zero: 24h.
	ResultTTL time.Duration
	// MaxReportBytes bounds the reports (child.Report) a Client keeps for a task whose
	// caller has not taken them (Future.Reports), as supervisor.Config.MaxReportBytes does on
	// a pool: past it, the task fails with supervisor.ErrReportOverflow and is cancelled on
	// its machine. Zero: 16 MiB.
	MaxReportBytes int
	// MaxBatch is how many tasks a Client sends in one message at most: 1 sends each alone.
	// Zero: as many as take about 50 ms of work, by how long the machines say the last
	// ones took, up to 256 (and 1 MiB); each alone until the first outcome says.
	MaxBatch int
	// Logger receives what the queue logs; nil: slog.Default() (for Serve: the pool's logger).
	Logger *slog.Logger
}

var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c Config) withDefaults() (Config, error) {
	if c.Queue == "" {
		c.Queue = "default"
	}
	if !queueName.MatchString(c.Queue) {
		return c, fmt.Errorf("queue name %q: only letters, digits, '-' and '_' may be used", c.Queue)
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.ResultTTL <= 0 {
		c.ResultTTL = 24 * time.Hour
	}
	if c.MaxReportBytes <= 0 {
		c.MaxReportBytes = 16 << 20
	}
	if c.MaxBatch < 0 || c.MaxBatch > channel.MaxBatch {
		return c, fmt.Errorf("MaxBatch %d: 0 (automatic) to %d", c.MaxBatch, channel.MaxBatch)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Names of the queue's streams, subjects and consumer (docs/protocol.md, section 9).
func (c Config) tasksStream() string    { return "SUPERVISE_" + c.Queue + "_TASKS" }
func (c Config) resultsStream() string  { return "SUPERVISE_" + c.Queue + "_RESULTS" }
func (c Config) deadStream() string     { return "SUPERVISE_" + c.Queue + "_DEAD" }
func (c Config) machinesStream() string { return "SUPERVISE_" + c.Queue + "_MACHINES" }

// machinesSubject is where machine id says it is alive, and what it holds; id may be "*".
func (c Config) machinesSubject(id string) string { return "supervise." + c.Queue + ".machines." + id }
func (c Config) tasksSubject() string             { return "supervise." + c.Queue + ".tasks" }
func (c Config) deadSubject() string              { return "supervise." + c.Queue + ".dead" }

// reportsSubject is where the machines send the reports (child.Report) of a run's tasks,
// in the order sent (core NATS, not stored).
func (c Config) reportsSubject(run string) string { return "supervise." + c.Queue + ".reports." + run }

// cancelSubject is where a run's submitter says which of its tasks are cancelled (core NATS,
// not stored): a task id in decimal, or "*" for all of them. run may be "*".
func (c Config) cancelSubject(run string) string { return "supervise." + c.Queue + ".cancel." + run }
func (c Config) resultSubject(run string, id uint64) string {
	return fmt.Sprintf("supervise.%s.results.%s.%d", c.Queue, run, id)
}

// batchResultSubject is where part `part` of the outcomes of delivery `delivery` of a run's
// batch num goes.
func (c Config) batchResultSubject(run string, num, delivery uint64, part int) string {
	return fmt.Sprintf("supervise.%s.results.%s.%d.%d.%d", c.Queue, run, num, delivery, part)
}

// parseResultSubject reads the batch and delivery of a run's batch result subject.
func (c Config) parseResultSubject(run, subject string) (num, delivery uint64, ok bool) {
	rest, found := strings.CutPrefix(subject, "supervise."+c.Queue+".results."+run+".")
	f := strings.Split(rest, ".")
	if !found || len(f) != 3 {
		return 0, 0, false
	}
	var err [3]error
	num, err[0] = strconv.ParseUint(f[0], 10, 64)
	delivery, err[1] = strconv.ParseUint(f[1], 10, 64)
	_, err[2] = strconv.ParseUint(f[2], 10, 16)
	return num, delivery, err == [3]error{}
}

func (c Config) resultsOf(run string) string {
	return "supervise." + c.Queue + ".results." + run + ".>"
}

const consumerName = "workers"

// Message headers.
const (
	headerRun        = "Supervise-Run"        // on a task: the submitter's run id
	headerBatch      = "Supervise-Batch"      // on a batch of tasks: its number in the run
	headerTook       = "Supervise-Took"       // on outcomes of a batch: microseconds of work a task took
	headerDone       = "Supervise-Done"       // on part 0 of a batch's outcomes: which tasks the delivery recorded
	headerParts      = "Supervise-Parts"      // on part 0 of a batch's outcomes: how many parts
	headerSeal       = "Supervise-Seal"       // on a task: the run's public key, to seal its result to
	headerSealedBy   = "Supervise-Sealed-By"  // on a sealed result: the machine's public key
	headerWorker     = "Supervise-Worker"     // on a result: host/pid of the machine that ran it
	headerDeliveries = "Supervise-Deliveries" // on a result and a report: the delivery that ran it
	headerReports    = "Supervise-Reports"    // on a result: how many reports that delivery sent
	headerTask       = "Supervise-Task"       // on a report: the task's id
	headerKind       = "Supervise-Kind"       // on a report: "put" for a follow-up (child.Put)
	headerReason     = "Supervise-Reason"     // on a dead letter: why
	headerFrom       = "Supervise-From"       // on a dead letter: the subject and sequence it came from
)
