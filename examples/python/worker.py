#!/usr/bin/env python3
"""examples/python/worker.py: an external worker for the workflow extension.

It does the quick start's "payment" task (examples/order.sql) in Python 3
with psycopg 3, deciding as examples/charge.pl does: an order of more than
500 is declined (the task fails and is retried per the task's "attempts"),
any other order is charged with the output {"charged": amount, "order": n}.
Replace charge() with your own work; the rest is the protocol of README.md,
"External tasks (Conductor's worker calls)":

- one connection in autocommit mode (see connect() for why that matters);
- a long poll: workflow.poll_tasks(type, worker id, batch size, wait) claims
  up to a batch of tasks and, when there is none, waits in the server until
  a task of that type is committed or the wait ends;
- the successes of a batch are reported in one workflow.complete_tasks call,
  the failures with workflow.fail_task;
- a report refused with SQLSTATE 55000 (object_not_in_prerequisite_state:
  the lease expired and the task was handed out again, or the job was
  canceled) means "drop this result": the worker logs it and goes on;
- when the connection drops (server restart, pg_terminate_backend) it
  reconnects with exponential backoff and reports what it still holds;
- SIGTERM or SIGINT stops it cleanly: no more polling, the current batch is
  finished and reported, exit status 0.

Usage:
    worker.py [--dsn DSN] [--task-type TYPE] [--worker-id ID]
              [--batch N] [--wait INTERVAL]

The DSN is a libpq connection string or URI; empty (the default), libpq's
environment variables apply (PGHOST, PGPORT, PGUSER, PGDATABASE, ...).
Defaults also come from WORKFLOW_DSN, WORKFLOW_TASK_TYPE and
WORKFLOW_WORKER_ID.  The role needs workflow_worker.  Needs psycopg 3
(Debian: python3-psycopg; elsewhere: pip install psycopg).
"""

import argparse
import logging
import os
import signal
import socket
import sys
import time

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb

log = logging.getLogger("worker.py")

# The long poll.  Only column references in the select list, and no
# transaction around it: in exactly this form the server holds neither a
# snapshot nor a transaction id while the poll waits (README, "Long polls
# and snapshots"), so an idle worker does not hold back vacuum.
POLL_SQL = (
    "SELECT job_id, task, attempt, lease, input"
    " FROM workflow.poll_tasks(%s::text, %s::text, %s::int, %s::interval)"
)
COMPLETE_BATCH_SQL = (
    "SELECT job_id, recorded"
    " FROM workflow.complete_tasks(%s::bigint[], %s::bigint[], %s::jsonb[])"
)
COMPLETE_ONE_SQL = "SELECT workflow.complete_task(%s::bigint, %s::bigint, %s::jsonb)"
FAIL_SQL = "SELECT workflow.fail_task(%s::bigint, %s::bigint, %s::text, %s::boolean)"

BACKOFF_MIN = 0.1  # seconds before the first reconnection attempt
BACKOFF_MAX = 10.0  # the longest pause between two attempts
REPORT_GIVE_UP = 300.0  # seconds after which an unreportable result is dropped


class Declined(Exception):
    """The task's work failed: report it with fail_task."""

    def __init__(self, message, retryable=True):
        super().__init__(message)
        self.retryable = retryable


def charge(task_input):
    """The payment task: the same decision as examples/charge.pl.

    task_input is the job context: {"job": {"params": ...}, "task": ...,
    "results": {earlier task: its output}}.  Returns the task's output (any
    JSON value) or raises Declined.
    """
    params = task_input["job"]["params"]
    amount = params["amount"]
    if amount > 500:
        # Retryable, as charge.pl's failure is: the quick start's workflow
        # gives payment two attempts.  A permanent refusal would pass
        # retryable=False, so that the onerror chain runs at once.
        raise Declined("card declined for order %s" % params["order"])
    return {"charged": amount, "order": int(params["order"])}


def is_connection_error(exc, conn):
    """Did exc end the connection (rather than fail one statement)?"""
    if conn is None or conn.closed or conn.broken:
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith("08") or state in ("57P01", "57P02", "57P03")


class Worker:
    """One connection, polling one task type and reporting what it did."""

    def __init__(self, args):
        self.args = args
        self.conn = None
        self.stopping = False  # set by SIGTERM/SIGINT: finish the batch, then exit
        self.polling = False  # a poll is running on self.conn: a stop cancels it
        self.lost = False  # the connection was lost and is not back yet
        self.unreported = 0  # results given up after REPORT_GIVE_UP

    # ------------------------------------------------------------ signals

    def on_stop_signal(self, signum, frame):
        """SIGTERM/SIGINT: stop polling; the batch in hand is still reported."""
        if not self.stopping:
            log.info("%s: stopping after the current batch", signal.Signals(signum).name)
        self.stopping = True
        self.cancel_poll()
        # A cancel that reaches the server before the poll statement does
        # is ignored; repeat it every second while a poll is running.
        signal.setitimer(signal.ITIMER_REAL, 1.0, 1.0)

    def on_alarm(self, signum, frame):
        """SIGALRM, once a second after a stop: cancel a poll still running."""
        self.cancel_poll()

    def cancel_poll(self):
        """Cancel a running long poll (libpq's PQcancel, a new connection).

        A poll canceled while waiting has claimed nothing.  One that had
        claimed tasks already returns them: they are the batch in hand.
        """
        if self.polling and self.conn is not None and not self.conn.closed:
            try:
                self.conn.cancel()
            except psycopg.Error:
                pass  # the poll ends when its wait does

    # ------------------------------------------------------------ connection

    def connect(self):
        """Open the connection, in autocommit mode.

        psycopg does NOT autocommit by default: the first statement opens a
        transaction that stays open until commit().  A worker that completed
        its tasks in such a transaction and never committed would lose those
        reports when the connection closes (the tasks are handed out again
        once their leases expire), and its long poll would run inside the
        transaction, holding a snapshot that holds back vacuum.  With
        autocommit every call below is its own transaction, committed when
        it returns.

        prepare_threshold=None: unnamed statements only, never named
        prepared ones, so that the worker also works behind a pooler in
        transaction mode (README, "Behind a connection pooler").
        """
        self.conn = psycopg.connect(
            self.args.dsn, autocommit=True, prepare_threshold=None,
            application_name=self.args.worker_id[:63])

    def pause(self, seconds, interruptible):
        """Sleep for a backoff; if interruptible, wake early on a stop."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (interruptible and self.stopping):
            time.sleep(min(0.1, max(end - time.monotonic(), 0)))

    def call(self, what, fn, give_up_after=None):
        """Run fn(conn), reconnecting with exponential backoff.

        Retries while the connection is lost or the statement was canceled
        (by a stop that came just after a poll returned); any other error is
        the caller's.  Gives up (returns None) after give_up_after seconds,
        or at once when stopping and give_up_after is None: polls stop when
        asked to, reports go on trying.
        """
        delay = BACKOFF_MIN
        start = time.monotonic()
        while True:
            try:
                if self.conn is None or self.conn.closed or self.conn.broken:
                    self.connect()
                    if self.lost:
                        log.info("reconnected")
                        self.lost = False
                return fn(self.conn)
            except errors.QueryCanceled:
                if give_up_after is None and self.stopping:
                    return None  # the stop canceled our poll
            except psycopg.OperationalError as exc:
                if not is_connection_error(exc, self.conn):
                    raise
                if not self.lost:  # logged once per loss, not per attempt
                    log.warning("%s: connection lost: %s; reconnecting",
                                what, " ".join(str(exc).split()))
                self.lost = True
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            if give_up_after is None and self.stopping:
                return None
            if give_up_after is not None and time.monotonic() - start > give_up_after:
                return None
            self.pause(delay, interruptible=give_up_after is None)
            delay = min(delay * 2, BACKOFF_MAX)

    # ------------------------------------------------------------ protocol

    def poll(self, conn):
        """Claim a batch: up to --batch tasks, waiting up to --wait for one."""
        self.polling = True
        try:
            if self.stopping:  # the signal came before self.polling was set
                return []
            return conn.execute(POLL_SQL, (self.args.task_type, self.args.worker_id,
                                           self.args.batch, self.args.wait)).fetchall()
        finally:
            self.polling = False

    def report_successes(self, done):
        """Report [(task, output)]: one complete_tasks call for the batch.

        That call is all or nothing: one stale lease (55000) fails it whole.
        Then each task is reported on its own, and only the refused ones
        are dropped.  A report repeated after a lost answer is harmless:
        complete_task(s) is idempotent for the same lease and output.
        """
        if not done:
            return

        def batch(conn):
            rows = conn.execute(COMPLETE_BATCH_SQL, (
                [t["job_id"] for t, _ in done],
                [t["lease"] for t, _ in done],
                [Jsonb(out) for _, out in done])).fetchall()
            log.info("reported %d task(s) with one complete_tasks call", len(rows))
            return True

        try:
            if self.call("complete_tasks", batch, REPORT_GIVE_UP) is None:
                self.give_up(len(done))
            return
        except errors.ObjectNotInPrerequisiteState:
            log.info("complete_tasks refused a lease of the batch; reporting task by task")
        except psycopg.Error as exc:
            log.error("complete_tasks failed: %s", exc.diag.message_primary or exc)
            self.give_up(len(done))
            return
        for task, output in done:
            self.report_one(task, "complete_task", COMPLETE_ONE_SQL,
                            (task["job_id"], task["lease"], Jsonb(output)))

    def report_failure(self, task, message, retryable):
        """Report a failed task: retried per its attempts unless not retryable."""
        self.report_one(task, "fail_task", FAIL_SQL,
                        (task["job_id"], task["lease"], message, retryable))

    def report_one(self, task, what, sql, params):
        """Run one report; a refused lease (55000) drops the result."""
        try:
            if self.call(what, lambda conn: conn.execute(sql, params), REPORT_GIVE_UP) is None:
                self.give_up(1)
        except errors.ObjectNotInPrerequisiteState as exc:
            log.warning("job=%s lease refused, result dropped: %s",
                        task["job_id"], exc.diag.message_primary)
        except psycopg.Error as exc:
            log.error("job=%s %s failed: %s", task["job_id"], what,
                      exc.diag.message_primary or exc)
            self.give_up(1)

    def give_up(self, n):
        """Count n results dropped because they could not be reported."""
        log.error("could not report %d results; their tasks are handed out again "
                  "when their leases expire", n)
        self.unreported += n

    def work(self, tasks):
        """Do a batch of tasks, then report it."""
        done = []
        for row in tasks:
            task = dict(zip(("job_id", "task", "attempt", "lease", "input"), row))
            try:
                output = charge(task["input"])
            except Exception as exc:  # any failure of the work fails the task
                retryable = getattr(exc, "retryable", True)
                log.info("job=%s task=%s attempt=%s outcome=failed error=%r",
                         task["job_id"], task["task"], task["attempt"], str(exc))
                self.report_failure(task, str(exc), retryable)
                continue
            log.info("job=%s task=%s attempt=%s outcome=succeeded",
                     task["job_id"], task["task"], task["attempt"])
            done.append((task, output))
        self.report_successes(done)

    def run(self):
        """Poll and work until stopped; returns the exit status."""
        log.info('started: worker id "%s", task type "%s", batch %d, wait %s',
                 self.args.worker_id, self.args.task_type, self.args.batch, self.args.wait)
        while not self.stopping:
            try:
                tasks = self.call("poll", self.poll)
            except psycopg.Error as exc:
                # not a lost connection: a missing grant, a bad argument, ...
                log.error("poll failed: %s", exc.diag.message_primary or exc)
                return 1
            if tasks:
                self.work(tasks)
        if self.conn is not None:
            self.conn.close()
        if self.unreported:
            log.info("stopped: %d results could not be reported", self.unreported)
            return 1
        log.info("stopped: every claimed task was reported")
        return 0


def main():
    """Parse the arguments, set up the signals, connect and run."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Do the workflow tasks of one type (payment).")
    parser.add_argument("--dsn", default=env("WORKFLOW_DSN", ""),
                        help="libpq connection string or URI (default: libpq's PG* variables)")
    parser.add_argument("--task-type", default=env("WORKFLOW_TASK_TYPE", "payment"))
    parser.add_argument("--worker-id",
                        default=env("WORKFLOW_WORKER_ID",
                                    "%s:%d" % (socket.gethostname(), os.getpid())),
                        help="runner id, owned by the role that uses it first (default HOST:PID)")
    parser.add_argument("--batch", type=int, default=10, help="most tasks per poll (1-1000)")
    parser.add_argument("--wait", default="20 s", help="long poll, at most 5 min (default 20 s)")
    args = parser.parse_args()

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(name)s: %(asctime)s %(levelname)s %(message)s")
    worker = Worker(args)
    signal.signal(signal.SIGTERM, worker.on_stop_signal)
    signal.signal(signal.SIGINT, worker.on_stop_signal)
    signal.signal(signal.SIGALRM, worker.on_alarm)
    try:
        worker.connect()
    except psycopg.OperationalError as exc:
        log.error("could not connect: %s", str(exc).strip())
        return 2
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
