#!/usr/bin/env node
// examples/node/worker.js: an external worker for the workflow extension.
//
// It does the quick start's "payment" task (examples/order.sql) in Node.js
// with node-postgres (the pg package), deciding as examples/charge.pl does:
// an order of more than 500 is declined (the task fails and is retried per
// the task's "attempts"), any other order is charged with the output
// {"charged": amount, "order": n}.  Replace charge() with your own work; the
// rest is the protocol of README.md, "External tasks (Conductor's worker
// calls)":
//
// - one connection, each statement its own transaction (see connect());
// - a long poll: workflow.poll_tasks(type, worker id, batch size, wait)
//   claims up to a batch of tasks and, when there is none, waits in the
//   server until a task of that type is committed or the wait ends;
// - the successes of a batch are reported in one workflow.complete_tasks
//   call, the failures with workflow.fail_task;
// - a report refused with SQLSTATE 55000 (object_not_in_prerequisite_state:
//   the lease expired and the task was handed out again, or the job was
//   canceled) means "drop this result": the worker logs it and goes on;
// - when the connection drops (server restart, pg_terminate_backend) it
//   reconnects with exponential backoff and reports what it still holds;
// - SIGTERM or SIGINT stops it cleanly: no more polling, the current batch
//   is finished and reported, exit status 0.
//
// Usage:
//   npm ci            # once, installs the pinned pg
//   node worker.js [--dsn URI] [--task-type TYPE] [--worker-id ID]
//                  [--batch N] [--wait INTERVAL]
//
// The DSN is a postgres:// URI; without one, the libpq-style environment
// variables apply (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD).
// Defaults also come from WORKFLOW_DSN, WORKFLOW_TASK_TYPE and
// WORKFLOW_WORKER_ID.  The role needs workflow_worker.

'use strict';

const net = require('node:net');
const os = require('node:os');
const { parseArgs } = require('node:util');
const pg = require('pg');

// The long poll.  Only column references in the select list, and no
// transaction around it: in exactly this form the server holds neither a
// snapshot nor a transaction id while the poll waits (README, "Long polls
// and snapshots"), so an idle worker does not hold back vacuum.
const POLL_SQL =
  'SELECT job_id, task, attempt, lease, input' +
  ' FROM workflow.poll_tasks($1::text, $2::text, $3::int, $4::interval)';
const COMPLETE_BATCH_SQL =
  'SELECT job_id, recorded' +
  ' FROM workflow.complete_tasks($1::bigint[], $2::bigint[], $3::jsonb[])';
const COMPLETE_ONE_SQL = 'SELECT workflow.complete_task($1::bigint, $2::bigint, $3::jsonb)';
const FAIL_SQL = 'SELECT workflow.fail_task($1::bigint, $2::bigint, $3::text, $4::boolean)';

const BACKOFF_MIN = 100; // ms before the first reconnection attempt
const BACKOFF_MAX = 10000; // the longest pause between two attempts
const REPORT_GIVE_UP = 300000; // ms after which an unreportable result is dropped

function log(level, message) {
  process.stderr.write(`worker.js: ${new Date().toISOString()} ${level} ${message}\n`);
}

// The task's work failed: report it with fail_task.
class Declined extends Error {
  constructor(message, retryable = true) {
    super(message);
    this.retryable = retryable;
  }
}

// The payment task: the same decision as examples/charge.pl.  `input` is
// the job context: {job: {params, ...}, task, results: {earlier task: its
// output}}.  Returns the task's output (any JSON value) or throws Declined.
function charge(input) {
  const params = input.job.params;
  const amount = params.amount;
  if (amount > 500) {
    // Retryable, as charge.pl's failure is: the quick start's workflow
    // gives payment two attempts.  A permanent refusal would pass
    // retryable = false, so that the onerror chain runs at once.
    throw new Declined(`card declined for order ${params.order}`);
  }
  return { charged: amount, order: Number(params.order) };
}

// A refused lease: the result is to be dropped.
function isStaleLease(err) {
  return err instanceof pg.DatabaseError && err.code === '55000';
}

class Worker {
  constructor(opts) {
    this.opts = opts;
    this.config = {
      connectionString: opts.dsn || undefined,
      application_name: opts.workerId.slice(0, 63),
    };
    this.client = null;
    this.stopping = false; // set by SIGTERM/SIGINT: finish the batch, then exit
    this.polling = false; // a poll is running on this.client: a stop cancels it
    this.lost = false; // the connection was lost and is not back yet
    this.unreported = 0; // results given up after REPORT_GIVE_UP
    this.wake = null; // ends a backoff pause early when a stop comes
    this.cancelTimer = null; // repeats the cancel of a poll after a stop
  }

  // ---------------------------------------------------------------- signals

  // SIGTERM/SIGINT: stop polling; the batch in hand is still reported.
  onStopSignal(signal) {
    if (!this.stopping) log('INFO', `${signal}: stopping after the current batch`);
    this.stopping = true;
    if (this.wake) this.wake();
    this.cancelPoll();
    // A cancel that reaches the server before the poll statement does is
    // ignored; repeat it every second while a poll is running.
    if (this.cancelTimer === null) this.cancelTimer = setInterval(() => this.cancelPoll(), 1000);
  }

  // Cancel a running long poll with PostgreSQL's cancel request (what
  // libpq's PQcancel sends): a new connection to the same server, or
  // pooler, that sends the key the server gave this connection at start.
  // Not pg_cancel_backend(pid): behind a transaction pooler, the server
  // process of a statement is not known in advance.  A poll canceled while
  // waiting has claimed nothing; one that had claimed tasks already
  // returns them: they are the batch in hand.
  cancelPoll() {
    const client = this.client;
    if (!this.polling || client === null || client.processID === null) return;
    const socket = client.host.startsWith('/')
      ? net.connect(`${client.host}/.s.PGSQL.${client.port}`)
      : net.connect(client.port, client.host);
    socket.on('error', () => {}); // then the poll ends when its wait does
    socket.on('connect', () => {
      const request = Buffer.alloc(16);
      request.writeInt32BE(16, 0); // length
      request.writeInt32BE(80877102, 4); // the cancel request code
      request.writeInt32BE(client.processID, 8);
      request.writeInt32BE(client.secretKey, 12);
      socket.end(request);
    });
  }

  // ---------------------------------------------------------------- connection

  // Open the connection.  node-postgres runs every query() outside
  // BEGIN ... COMMIT as its own transaction, committed when it returns:
  // keep it so.  A worker that sends BEGIN (or runs its reports through a
  // driver or pool set to open transactions) and does not COMMIT loses its
  // reports when the connection closes (the tasks are handed out again once
  // their leases expire), and its long poll would hold a snapshot that
  // holds back vacuum.
  async connect() {
    const client = new pg.Client(this.config);
    client.dead = false;
    // Without a listener, an 'error' event on an idle client (the server
    // went away) would end the process.
    client.on('error', () => {
      client.dead = true;
    });
    client.on('end', () => {
      client.dead = true;
    });
    try {
      await client.connect();
    } catch (err) {
      client.end().catch(() => {});
      throw err;
    }
    this.client = client;
  }

  // Did err end the connection (rather than fail one statement)?
  isConnectionError(err) {
    if (this.client === null || this.client.dead) return true;
    if (err instanceof pg.DatabaseError) return /^(08|57P0[123])/.test(err.code);
    return !(err instanceof TypeError || err instanceof RangeError);
  }

  // Sleep for a backoff; if interruptible, wake early on a stop.
  pause(ms, interruptible) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      if (interruptible) this.wake = done;
    }).finally(() => {
      this.wake = null;
    });
  }

  // Run fn(client), reconnecting with exponential backoff.  Retries while
  // the connection is lost or the statement was canceled (by a stop that
  // came just after a poll returned); any other error is the caller's.
  // Gives up (returns undefined) after giveUpAfter ms, or at once when
  // stopping and giveUpAfter is null: polls stop when asked to, reports go
  // on trying.
  async call(what, fn, giveUpAfter = null) {
    let delay = BACKOFF_MIN;
    const start = Date.now();
    for (;;) {
      try {
        if (this.client === null) {
          await this.connect();
          if (this.lost) {
            log('INFO', 'reconnected');
            this.lost = false;
          }
        }
        return await fn(this.client);
      } catch (err) {
        if (err instanceof pg.DatabaseError && err.code === '57014') {
          if (giveUpAfter === null && this.stopping) return undefined; // our stop
        } else if (this.isConnectionError(err)) {
          if (!this.lost) {
            // logged once per loss, not per attempt
            log('WARNING', `${what}: connection lost: ${err.message}; reconnecting`);
          }
          this.lost = true;
          if (this.client !== null) this.client.end().catch(() => {});
          this.client = null;
        } else {
          throw err;
        }
      }
      if (giveUpAfter === null && this.stopping) return undefined;
      if (giveUpAfter !== null && Date.now() - start > giveUpAfter) return undefined;
      await this.pause(delay, giveUpAfter === null);
      delay = Math.min(delay * 2, BACKOFF_MAX);
    }
  }

  // ---------------------------------------------------------------- protocol

  async poll(client) {
    if (this.stopping) return [];
    this.polling = true;
    try {
      const { rows } = await client.query(POLL_SQL, [
        this.opts.taskType,
        this.opts.workerId,
        this.opts.batch,
        this.opts.wait,
      ]);
      return rows;
    } finally {
      this.polling = false;
    }
  }

  // Report [{task, output}]: one complete_tasks call for the batch.  That
  // call is all or nothing: one stale lease (55000) fails it whole.  Then
  // each task is reported on its own, and only the refused ones are
  // dropped.  A report repeated after a lost answer is harmless:
  // complete_task(s) is idempotent for the same lease and output.
  // bigint columns arrive as strings (node-postgres keeps their 64 bits)
  // and go back as strings; outputs go as JSON text.
  async reportSuccesses(done) {
    if (done.length === 0) return;
    try {
      const rows = await this.call(
        'complete_tasks',
        async (client) =>
          (
            await client.query(COMPLETE_BATCH_SQL, [
              done.map((d) => d.task.job_id),
              done.map((d) => d.task.lease),
              done.map((d) => JSON.stringify(d.output)),
            ])
          ).rows,
        REPORT_GIVE_UP,
      );
      if (rows === undefined) this.giveUp(done.length);
      else log('INFO', `reported ${rows.length} task(s) with one complete_tasks call`);
      return;
    } catch (err) {
      if (!isStaleLease(err)) {
        log('ERROR', `complete_tasks failed: ${err.message}`);
        this.giveUp(done.length);
        return;
      }
      log('INFO', 'complete_tasks refused a lease of the batch; reporting task by task');
    }
    for (const d of done) {
      await this.reportOne(d.task, 'complete_task', COMPLETE_ONE_SQL, [
        d.task.job_id,
        d.task.lease,
        JSON.stringify(d.output),
      ]);
    }
  }

  async reportFailure(task, message, retryable) {
    await this.reportOne(task, 'fail_task', FAIL_SQL, [task.job_id, task.lease, message, retryable]);
  }

  // Run one report; a refused lease (55000) drops the result.
  async reportOne(task, what, sql, params) {
    try {
      const res = await this.call(what, (client) => client.query(sql, params), REPORT_GIVE_UP);
      if (res === undefined) this.giveUp(1);
    } catch (err) {
      if (isStaleLease(err)) {
        log('WARNING', `job=${task.job_id} lease refused, result dropped: ${err.message}`);
      } else {
        log('ERROR', `job=${task.job_id} ${what} failed: ${err.message}`);
        this.giveUp(1);
      }
    }
  }

  giveUp(n) {
    log('ERROR', `could not report ${n} results; their tasks are handed out again when their leases expire`);
    this.unreported += n;
  }

  // Do a batch of tasks, then report it.
  async work(tasks) {
    const done = [];
    for (const task of tasks) {
      const what = `job=${task.job_id} task=${task.task} attempt=${task.attempt}`;
      let output;
      try {
        output = charge(task.input);
      } catch (err) {
        // any failure of the work fails the task
        log('INFO', `${what} outcome=failed error=${JSON.stringify(err.message)}`);
        await this.reportFailure(task, err.message, err.retryable !== false);
        continue;
      }
      log('INFO', `${what} outcome=succeeded`);
      done.push({ task, output });
    }
    await this.reportSuccesses(done);
  }

  async run() {
    const o = this.opts;
    log('INFO', `started: worker id "${o.workerId}", task type "${o.taskType}", batch ${o.batch}, wait ${o.wait}`);
    while (!this.stopping) {
      let tasks;
      try {
        tasks = await this.call('poll', (client) => this.poll(client));
      } catch (err) {
        // not a lost connection: a missing grant, a bad argument, ...
        log('ERROR', `poll failed: ${err.message}`);
        return 1;
      }
      if (tasks && tasks.length > 0) await this.work(tasks);
    }
    if (this.unreported > 0) {
      log('INFO', `stopped: ${this.unreported} results could not be reported`);
      return 1;
    }
    log('INFO', 'stopped: every claimed task was reported');
    return 0;
  }

  async close() {
    if (this.cancelTimer !== null) clearInterval(this.cancelTimer);
    if (this.client !== null) await this.client.end().catch(() => {});
  }
}

async function main() {
  const env = process.env;
  const { values } = parseArgs({
    options: {
      dsn: { type: 'string', default: env.WORKFLOW_DSN || '' },
      'task-type': { type: 'string', default: env.WORKFLOW_TASK_TYPE || 'payment' },
      'worker-id': { type: 'string', default: env.WORKFLOW_WORKER_ID || `${os.hostname()}:${process.pid}` },
      batch: { type: 'string', default: '10' }, // most tasks per poll (1-1000)
      wait: { type: 'string', default: '20 s' }, // long poll, at most 5 min
    },
  });
  const worker = new Worker({
    dsn: values.dsn,
    taskType: values['task-type'],
    workerId: values['worker-id'],
    batch: Number.parseInt(values.batch, 10),
    wait: values.wait,
  });
  process.on('SIGTERM', () => worker.onStopSignal('SIGTERM'));
  process.on('SIGINT', () => worker.onStopSignal('SIGINT'));
  try {
    await worker.connect();
  } catch (err) {
    log('ERROR', `could not connect: ${err.message}`);
    return 2;
  }
  const status = await worker.run();
  await worker.close();
  return status;
}

main().then(
  (status) => process.exit(status),
  (err) => {
    log('ERROR', err.stack);
    process.exit(1);
  },
);
