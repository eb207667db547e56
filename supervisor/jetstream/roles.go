package jetstream

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// Roles give the clients of a server credentials of their own role, each allowed only what
// that role needs on the queues named (NATS permissions), instead of the one all-powerful
// credential of ServerConfig.Token and ServerConfig.NKeys:
//
//   - a submitter may publish tasks, cancel and remove them, read results and remove them,
//     hear reports (sealed to their runs) and that a task was lost; it may not publish a
//     result, nor a server advisory;
//   - a machine may take tasks, acknowledge them, hear their cancels, publish reports and
//     results, and heartbeats; it may not publish a task or a cancel, nor a server advisory.
//
// Limits: permissions name streams, not runs, so a submitter can fetch, and remove, the
// results of other runs of its queues, and cancel their tasks (it reads nothing of them: a
// Client's results and reports are sealed to its run, see ErrForged); and a machine, which
// publishes results, can publish a false one.
type Roles struct {
	// Queues are the queues the roles may use. Empty: "default".
	Queues []string
	// Submitters and Machines are nkey public keys (U...); each signs in with its seed.
	Submitters, Machines []string
}

// users are the nkey users of the roles.
func (r Roles) users() ([]*server.NkeyUser, error) {
	queues := r.Queues
	if len(queues) == 0 {
		queues = []string{"default"}
	}
	var sub, mach []string
	for _, q := range queues {
		c := Config{Queue: q}
		if _, err := c.withDefaults(); err != nil {
			return nil, fmt.Errorf("roles: %w", err)
		}
		sub = append(sub, submitterSubjects(c)...)
		mach = append(mach, machineSubjects(c)...)
	}
	var users []*server.NkeyUser
	for _, k := range r.Submitters {
		subs := perQueue(queues, func(c Config) string {
			return fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", c.tasksStream(), consumerName)
		})
		subs = append(subs, perQueue(queues, func(c Config) string { return c.reportsSubject("*") })...)
		subs = append(subs, perQueue(queues, func(c Config) string { return c.statsSubject("*") })...) // a live view of the machines
		users = append(users, &server.NkeyUser{Nkey: k, Permissions: allow(sub, subs)})
	}
	for _, k := range r.Machines {
		users = append(users, &server.NkeyUser{Nkey: k, Permissions: allow(mach, perQueue(queues, func(c Config) string { return c.cancelSubject("*") }))})
	}
	return users, nil
}

// perQueue maps each queue's Config through f.
func perQueue(queues []string, f func(Config) string) []string {
	var out []string
	for _, q := range queues {
		out = append(out, f(Config{Queue: q}))
	}
	return out
}

// allow is a permission to publish on pub and to subscribe to replies and on sub.
func allow(pub, sub []string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: append([]string{"_INBOX.>"}, sub...)},
	}
}

// streamSubjects are what both roles need of a queue's streams: to create them on first use,
// and to learn about them.
func streamSubjects(c Config) []string {
	out := []string{"$JS.API.INFO", c.deadSubject()}
	for _, s := range []string{c.tasksStream(), c.resultsStream(), c.deadStream()} {
		out = append(out, "$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s)
	}
	return out
}

func submitterSubjects(c Config) []string {
	t, r := c.tasksStream(), c.resultsStream()
	return append(streamSubjects(c),
		c.tasksSubject(),
		// Cancelling its tasks on the machines.
		c.cancelSubject("*"),
		// The run's ordered consumer of its results.
		"$JS.API.CONSUMER.CREATE."+r, "$JS.API.CONSUMER.CREATE."+r+".>",
		"$JS.API.CONSUMER.INFO."+r+".*", "$JS.API.CONSUMER.DELETE."+r+".*", "$JS.API.CONSUMER.MSG.NEXT."+r+".*",
		// Removing a result (a forged one; the run's, at its end) and a lost task.
		"$JS.API.STREAM.MSG.DELETE."+r, "$JS.API.STREAM.PURGE."+r,
		"$JS.API.STREAM.MSG.GET."+t, "$JS.API.STREAM.MSG.DELETE."+t,
		// Whether any machine pulls from the queue (Client.Pulls).
		"$JS.API.CONSUMER.INFO."+t+"."+consumerName,
	)
}

func machineSubjects(c Config) []string {
	t, r, m := c.tasksStream(), c.resultsStream(), c.machinesStream()
	return append(streamSubjects(c),
		"supervise."+c.Queue+".results.>", c.reportsSubject("*"), c.statsSubject("*"),
		// Heartbeats: their stream, and an ordered consumer of it.
		c.machinesSubject("*"), "$JS.API.STREAM.INFO."+m, "$JS.API.STREAM.CREATE."+m, "$JS.API.STREAM.UPDATE."+m,
		"$JS.API.CONSUMER.CREATE."+m, "$JS.API.CONSUMER.CREATE."+m+".>",
		"$JS.API.CONSUMER.INFO."+m+".*", "$JS.API.CONSUMER.DELETE."+m+".*", "$JS.API.CONSUMER.MSG.NEXT."+m+".*",
		"$JS.API.CONSUMER.CREATE."+t, "$JS.API.CONSUMER.CREATE."+t+".>", "$JS.API.CONSUMER.DURABLE.CREATE."+t+"."+consumerName,
		"$JS.API.CONSUMER.INFO."+t+"."+consumerName, "$JS.API.CONSUMER.MSG.NEXT."+t+"."+consumerName,
		"$JS.ACK."+t+".>",
		// Whether a task's result is stored already.
		"$JS.API.STREAM.MSG.GET."+r, "$JS.API.DIRECT.GET."+r, "$JS.API.DIRECT.GET."+r+".>",
	)
}
