/*-------------------------------------------------------------------------
 *
 * workflow_worker.c
 *		workflow-worker: the external task client of the workflow extension
 *		(Netflix Conductor's coordinator), a PostgreSQL frontend program
 *		built with PGXS (client/Makefile) and linked with libpq and the
 *		frontend libraries libpgcommon and libpgport, as contrib/vacuumlo.
 *
 *	workflow-worker -d CONNINFO -t TASK_TYPE [-n THREADS] [--domain D]
 *					[--batch N] [--wait INTERVAL] [--worker-id ID]
 *					-- COMMAND [ARGS...]
 *
 * It claims tasks of one type with workflow.poll_tasks() and runs COMMAND
 * once per task, with the task's input (the job context, JSON) on the
 * command's standard input.  Exit status 0 completes the task with what
 * the command printed on standard output (JSON; nothing = a null output);
 * anything else fails it with the tail of the command's standard error.
 *
 * Threads:
 *
 * - The main thread polls.  It owns one dedicated connection, on which it
 *	 long-polls (`SELECT <columns> FROM workflow.poll_tasks(...)', the only
 *	 form in which the server holds no snapshot while waiting) for as many
 *	 tasks as there are free worker threads, never more than --batch.  It
 *	 waits for the answer with poll(2) on the connection's socket and on a
 *	 self-pipe, so that a signal (pause, drain) or a freed thread wakes it;
 *	 it cancels a pending long poll with PQcancel when told to stop.
 * - N worker threads run the commands (fork and execve, pipes, poll(2))
 *	 and report the outcome with complete_task / fail_task.  They share one
 *	 reporting connection, under a mutex: reports are short statements, and
 *	 a PostgreSQL connection is a server process, so the client uses three
 *	 connections whatever N is (poll, reports, heartbeat).
 * - A heartbeat thread, on its own connection, calls extend_task for every
 *	 running task whose lease is more than half used and has not ended.  It
 *	 sleeps on a condition variable until the earliest such moment.
 * - A signal thread receives SIGUSR1/SIGUSR2/SIGTERM/SIGINT with sigwait(),
 *	 which all other threads block, sets the state flags and wakes the
 *	 poller.
 *
 * Reports are retried with exponential backoff (100 ms doubling up to 10 s,
 * for at most 5 minutes), reconnecting when the server went away; a stale
 * lease (SQLSTATE 55000) is final: the result is dropped.  complete_task
 * and fail_task are idempotent for one lease, so a retry after a lost
 * answer does no harm.
 *
 * Bounds.  A command runs only while its task is ours and within its time:
 *
 * - A lease is the client's only while it has not ended by the client's
 *	 clock (the expiry the poll or the last extend_task returned, moved onto
 *	 a clock that goes on while the process is stopped or the machine
 *	 sleeps).  A task whose lease has ended is not started, extended or
 *	 reported: the sweeper takes it back and may have handed it out again.
 * - The task's `timeout' (read once per workflow version and task from
 *	 workflow.tasks, which workflow_worker may read) is the time of one
 *	 attempt: the first lease of a task with a timeout ends exactly then, so
 *	 that end is the command's deadline, which extensions do not move.
 *	 Past it the command is stopped and the task failed with a message
 *	 saying so.  A task without a timeout is bounded by its job's timeout:
 *	 the sweeper then ends the job, and the next extension says so.
 * - The command is stopped (SIGTERM to its process group, SIGKILL
 *	 STOP_GRACE_SECS later) when its timeout passes, when its lease ends or
 *	 extend_task says it is no longer valid (its result is then dropped), or
 *	 on a second SIGTERM/SIGINT (its task is then handed back).
 * - Each command is a process group of its own, forked by its worker
 *	 thread; on Linux (and FreeBSD) it gets SIGKILL when that thread dies,
 *	 so a client killed with SIGKILL leaves no command running on its own.
 *	 A worker thread ends only after its command was reaped.  Processes the
 *	 command starts in the background are in its group (the stops above
 *	 reach them) but are not killed with the client.
 *
 * The frontend libraries and threads: fe_memutils (pg_malloc, pg_strdup,
 * psprintf, pg_free) only wraps malloc/free, and exits on out of memory as
 * every PostgreSQL program does; PQExpBuffers and psprintf work on the
 * caller's memory; port.h's snprintf family is reentrant (%m included).
 * common/logging is used from every thread, but pg_log_generic writes one
 * line with several fprintf calls to the unbuffered stderr (program name,
 * level, message), so log_line() serializes the lines with log_lock.
 * strerror() is port.h's pg_strerror(), which returns a static buffer:
 * messages use %m, which formats errno on the caller's stack.
 * set_pglocale_pgservice() is not called: it would set LC_NUMERIC from the
 * environment, and strtod() reads the server's numbers with a '.'.
 *
 * Copyright (c) 2026, the workflow developers
 *
 * client/workflow_worker.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* pipe2 (PostgreSQL's Linux build sets it) */
#endif

#include "postgres_fe.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SYS_PRCTL_H
#include <sys/prctl.h>			/* PR_SET_PDEATHSIG */
#endif
#ifdef HAVE_SYS_PROCCTL_H
#include <sys/procctl.h>		/* PROC_PDEATHSIG_CTL */
#endif

#include "common/logging.h"
#include "getopt_long.h"
#include "libpq-fe.h"
#include "mb/pg_wchar.h"
#include "port/pg_bswap.h"
#include "pqexpbuffer.h"

#define WORKER_VERSION		"1.0"

/* PostgreSQL 18 replaced pg_attribute_noreturn() with pg_noreturn */
#ifndef pg_noreturn
#define pg_noreturn pg_attribute_noreturn()
#endif

#define BACKOFF_MIN			0.1		/* seconds: first retry delay */
#define BACKOFF_MAX			10.0	/* seconds: longest retry delay */
#define REPORT_RETRY_SECS	300.0	/* give a report up after 5 minutes */
#define CANCEL_REPEAT_SECS	1.0		/* resend a cancel not yet acted on */
#define IDLE_POLL_SECS		1.0		/* between empty polls when --wait is 0 */
#define STDERR_TAIL			4096	/* bytes of stderr kept for the error */
#define MAX_OUTPUT			(64 * 1024 * 1024)	/* largest stdout accepted */
#define MAX_WAIT_SECS		300.0	/* poll_tasks' limit */
#define MAX_BATCH			1000	/* poll_tasks' limit */
#define MAX_THREADS			1024
#define LOG_ERROR_CHARS		300		/* of an error shown in a log line */
#define STOP_GRACE_SECS		5.0		/* from SIGTERM to SIGKILL of a command */
#define MAX_TIMEOUTS_KEPT	1000	/* task timeouts remembered */

/* Seconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch) */
#define PG_EPOCH_OFFSET		946684800.0

/* The long poll: only column references in the select list (see above). */
#define POLL_SQL \
	"SELECT job_id, task, attempt, lease, lease_expires_at, input " \
	"FROM workflow.poll_tasks($1, $2, $3, $4, $5)"
#define COMPLETE_SQL	"SELECT workflow.complete_task($1, $2, $3::jsonb)"
#define FAIL_SQL		"SELECT workflow.fail_task($1, $2, $3, true)"
#define REQUEUE_SQL		"SELECT workflow.requeue_task($1, $2, interval '0')"
#define EXTEND_SQL \
	"SELECT extract(epoch FROM workflow.extend_task($1, $2))::float8, " \
	"extract(epoch FROM clock_timestamp())::float8"
#define TIMEOUT_SQL \
	"SELECT extract(epoch FROM t.timeout)::float8 " \
	"FROM workflow.workflows w JOIN workflow.tasks t ON t.workflow_id = w.id " \
	"WHERE w.name = $1 AND w.version = $2::integer AND t.name = $3"
#define STARTUP_SQL \
	"SELECT extract(epoch FROM clock_timestamp())::float8, " \
	"extract(epoch FROM $1::interval)::float8, " \
	"EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'workflow')"

/* One claimed task */
typedef struct Task
{
	long long	job_id;
	char	   *name;			/* the task's name in its workflow */
	int			attempt;
	long long	lease;
	char	   *input;			/* the job context, JSON text */
	size_t		input_len;
	/* the lease, on this process's clock, mono_now() (under state_lock) */
	double		lease_start;	/* when it (or its last extension) began */
	double		lease_end;		/* when it ends */
	double		next_extend;	/* when the heartbeat extends it next */
	bool		lease_lost;		/* extend_task said it is no longer valid */
	double		first_lease_end;	/* when the lease the poll gave ends */
	/* set by its worker thread before the command starts */
	double		timeout;		/* the task's timeout in seconds, 0: none */
	double		deadline;		/* when the command must end (mono_now), 0: never */
	struct Task *next;			/* in the queue of claimed tasks */
} Task;

/* Why a command is being stopped; the first reason stays */
typedef enum StopReason
{
	STOP_NONE = 0,
	STOP_INTERRUPTED,			/* a second SIGTERM/SIGINT: hand the task back */
	STOP_TIMEOUT,				/* past the task's timeout: fail the task */
	STOP_LEASE_LOST,			/* extend_task said 55000: drop the result */
	STOP_LEASE_ENDED			/* the lease ended by our clock: drop it */
} StopReason;

/* One worker thread (fields under state_lock) */
typedef struct Slot
{
	pthread_t	thread;
	Task	   *task;			/* the task it runs, or NULL */
	pid_t		pid;			/* its command (a process group), or 0 */
	StopReason	stop;			/* why its command is being stopped */
	double		stop_at;		/* when SIGTERM was sent (mono_now) */
	bool		killed;			/* SIGKILL was sent */
} Slot;

/* A task's timeout, as read from workflow.tasks (under timeout_lock) */
typedef struct TimeoutEntry
{
	char	   *workflow;
	int			version;
	char	   *task;
	double		timeout;		/* seconds, 0: none */
	struct TimeoutEntry *next;
} TimeoutEntry;

/* A connection shared by threads */
typedef struct Conn
{
	const char *name;			/* for the log: "poll", "report", "heartbeat" */
	PGconn	   *conn;
	bool		lost;			/* a loss was logged, not yet the recovery */
	pthread_mutex_t lock;
} Conn;

/* How a call ended */
typedef enum CallStatus
{
	CALL_OK,					/* done; the result is returned */
	CALL_STALE,					/* SQLSTATE 55000: the lease is stale */
	CALL_REJECTED,				/* another error reported by the server */
	CALL_FAILED					/* no answer in time (connection problems) */
} CallStatus;

/* Kinds of errors, for retrying */
typedef enum ErrorKind
{
	ERR_CONNECTION,				/* the connection is gone or going */
	ERR_TRANSIENT,				/* worth retrying on the same connection */
	ERR_STALE,					/* 55000 */
	ERR_OTHER					/* final */
} ErrorKind;

/* What a command did */
typedef struct CommandResult
{
	int			spawn_error;	/* errno of pipe2, fork or execve, or 0 */
	int			status;			/* wait status */
	StopReason	stop;			/* why it was stopped, if it was */
	PQExpBufferData out;		/* stdout */
	bool		out_too_big;
	char		err[STDERR_TAIL + 1];	/* tail of stderr */
	size_t		err_len;
	bool		err_truncated;
	double		duration;		/* seconds */
} CommandResult;

/* The pipes to a running command, our ends; -1 once closed */
typedef struct CommandPipes
{
	int			in_fd;			/* its stdin */
	int			out_fd;			/* its stdout */
	int			err_fd;			/* its stderr */
	size_t		written;		/* bytes of the input written */
} CommandPipes;

/* Settings */
static const char *progname;
static const char *conninfo;
static const char *task_type;
static const char *task_domain;
static const char *wait_text = "20 s";
static double wait_secs;
static int	nthreads = 1;
static int	batch_size;
static char *worker_id;
static char **command;

/* Shared state, under state_lock */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t heartbeat_cond;
static bool paused;				/* SIGUSR1 */
static bool draining;			/* first SIGTERM/SIGINT */
static bool stopping;			/* second one: stop the commands */
static bool poll_done;			/* the poller stopped: workers may exit */
static bool heartbeat_done;
static int	busy;				/* claimed tasks not yet reported */
static Task *queue_head;
static Task *queue_tail;
static Slot *slots;
static double clock_offset;		/* server clock minus ours, seconds */

static pthread_mutex_t timeout_lock = PTHREAD_MUTEX_INITIALIZER;
static TimeoutEntry *timeouts;	/* the task timeouts read so far */
static int	ntimeouts;

static int	wake_pipe[2];		/* wakes the poller */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static Conn poll_conn = {"poll", NULL, false, PTHREAD_MUTEX_INITIALIZER};
static Conn report_conn = {"report", NULL, false, PTHREAD_MUTEX_INITIALIZER};
static Conn heartbeat_conn = {"heartbeat", NULL, false, PTHREAD_MUTEX_INITIALIZER};

static void log_line(enum pg_log_level level, const char *fmt,...) pg_attribute_printf(2, 3);

/* The lines of the running client, see log_line() */
#define log_info(...)		log_line(PG_LOG_INFO, __VA_ARGS__)
#define log_warning(...)	log_line(PG_LOG_WARNING, __VA_ARGS__)
#define log_error(...)		log_line(PG_LOG_ERROR, __VA_ARGS__)


/*
 * Seconds on the clock that leases and deadlines are measured on: one that
 * never jumps and, where there is one (Linux's CLOCK_BOOTTIME), goes on
 * while the machine sleeps, as the server's clock does.  Only differences
 * of its values are used.
 */
static double
mono_now(void)
{
	struct timespec ts;

#ifdef CLOCK_BOOTTIME
	if (clock_gettime(CLOCK_BOOTTIME, &ts) == 0)
		return ts.tv_sec + ts.tv_nsec / 1e9;
#endif
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Seconds since 1970 on the real-time clock.
 */
static double
real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Sleep for some seconds (never interrupted: every signal is blocked).
 */
static void
sleep_secs(double secs)
{
	struct timespec ts;

	if (secs <= 0)
		return;
	ts.tv_sec = (time_t) secs;
	ts.tv_nsec = (long) ((secs - (double) ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * The next delay of an exponential backoff.
 */
static double
next_backoff(double backoff)
{
	backoff *= 2;
	return backoff > BACKOFF_MAX ? BACKOFF_MAX : backoff;
}

/*
 * Log one line of the running client with common/logging: the program
 * name (and "error: " or "warning: "), then local time with milliseconds,
 * time zone and pid, then the message.  The time and pid are put in front
 * of the caller's format, so that pg_log_generic_v formats the whole line
 * once; log_lock keeps the lines of several threads apart (see the file
 * banner).
 */
static void
log_line(enum pg_log_level level, const char *fmt,...)
{
	int			save_errno = errno;	/* for %m */
	PQExpBufferData line_fmt;
	char		stamp[64];
	char		zone[64];
	struct timespec ts;
	struct tm	tm;
	const char *z;
	va_list		ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%Z", &tm);

	initPQExpBuffer(&line_fmt);
	appendPQExpBuffer(&line_fmt, "%s.%03d ", stamp, (int) (ts.tv_nsec / 1000000));
	/* the zone's name becomes part of a format: double any "%" */
	for (z = zone; *z != '\0'; z++)
	{
		if (*z == '%')
			appendPQExpBufferChar(&line_fmt, '%');
		appendPQExpBufferChar(&line_fmt, *z);
	}
	appendPQExpBuffer(&line_fmt, " [%d] ", (int) getpid());
	appendPQExpBufferStr(&line_fmt, fmt);

	va_start(ap, fmt);
	pthread_mutex_lock(&log_lock);
	errno = save_errno;
	/* out of memory: at least the message */
	pg_log_generic_v(level, PG_LOG_PRIMARY,
					 PQExpBufferBroken(&line_fmt) ? fmt : line_fmt.data, ap);
	pthread_mutex_unlock(&log_lock);
	va_end(ap);
	termPQExpBuffer(&line_fmt);
}

/*
 * Make text safe to send as a PostgreSQL text value: bytes that do not
 * start a legal UTF-8 character (pg_utf8_islegal: no overlong forms, no
 * surrogates, nothing past U+10FFFF) become '?' and NUL bytes spaces.
 * Works in place.
 */
static void
sanitize_utf8(char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		const unsigned char *c = (const unsigned char *) s + i;
		int			n;

		if (*c == 0)
		{
			s[i++] = ' ';
			continue;
		}
		n = pg_utf_mblen(c);
		if (i + n > len || !pg_utf8_islegal(c, n))
		{
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

/*
 * Append a message quoted for a log line: one line, at most
 * LOG_ERROR_CHARS characters, with quotes, backslashes and control
 * characters escaped.
 */
static void
append_quoted_for_log(PQExpBuffer buf, const char *msg)
{
	size_t		i;

	appendPQExpBufferChar(buf, '"');
	for (i = 0; msg[i] != '\0'; i++)
	{
		unsigned char c = (unsigned char) msg[i];

		if (i >= LOG_ERROR_CHARS)
		{
			appendPQExpBufferStr(buf, "...");
			break;
		}
		if (c == '"' || c == '\\')
		{
			appendPQExpBufferChar(buf, '\\');
			appendPQExpBufferChar(buf, c);
		}
		else if (c == '\n')
			appendPQExpBufferStr(buf, "\\n");
		else if (c < 0x20 || c == 0x7f)
			appendPQExpBufferChar(buf, ' ');
		else
			appendPQExpBufferChar(buf, c);
	}
	appendPQExpBufferChar(buf, '"');
}

/*
 * Drop trailing white space (newlines above all) from a message.
 */
static void
trim_trailing_space(char *s)
{
	size_t		len = strlen(s);

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
					   s[len - 1] == ' ' || s[len - 1] == '\t'))
		s[--len] = '\0';
}

/*
 * Put a (libpq) message on one line: each run of white space, newlines and
 * tabs included, becomes one space; none is left at either end.
 */
static void
one_line(char *s)
{
	char	   *o = s;
	const char *i = s;
	bool		space = false;

	for (; *i != '\0'; i++)
	{
		if (*i == ' ' || *i == '\n' || *i == '\t' || *i == '\r')
		{
			space = (o != s);
			continue;
		}
		if (space)
			*o++ = ' ';
		space = false;
		*o++ = *i;
	}
	*o = '\0';
}

/*
 * Wake the poller (a byte in the self-pipe; a full pipe is as good).
 */
static void
wake_poller(void)
{
	char		c = 0;
	ssize_t		rc;

	do
		rc = write(wake_pipe[1], &c, 1);
	while (rc < 0 && errno == EINTR);
}

/*
 * Empty the self-pipe.
 */
static void
drain_wakeups(void)
{
	char		buf[256];

	while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * Wait until the poller is woken, or timeout_ms passed (-1: no timeout).
 */
static void
wait_for_wakeup(int timeout_ms)
{
	struct pollfd pfd = {wake_pipe[0], POLLIN, 0};

	if (poll(&pfd, 1, timeout_ms) > 0)
		drain_wakeups();
}


/* ---------------------------------------------------------------------
 * Connections
 * ---------------------------------------------------------------------
 */

/*
 * Open a connection with the user's connection string, in UTF-8 (JSON's
 * encoding) and with our application name unless the string has one.
 */
static PGconn *
open_connection(void)
{
	const char *keywords[] = {"dbname", "client_encoding", "fallback_application_name", NULL};
	const char *values[] = {conninfo, "UTF8", progname, NULL};

	return PQconnectdbParams(keywords, values, 1);
}

/*
 * The connection's last error as one line.
 */
static void
connection_error(PGconn *conn, char *buf, size_t buflen)
{
	snprintf(buf, buflen, "%s", conn ? PQerrorMessage(conn) : "out of memory");
	one_line(buf);
	if (buf[0] == '\0')
		snprintf(buf, buflen, "connection lost");
}

/*
 * Make sure a shared connection is usable: connect or reset it when it is
 * not.  The caller holds c->lock.  Returns false (and logs, once per loss)
 * when the server cannot be reached.
 */
static bool
conn_ready(Conn *c)
{
	char		msg[1024];

	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK)
		return true;
	if (c->conn == NULL)
		c->conn = open_connection();
	else
		PQreset(c->conn);
	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK)
	{
		if (c->lost)
			log_info("%s connection: reconnected", c->name);
		c->lost = false;
		return true;
	}
	connection_error(c->conn, msg, sizeof(msg));
	if (!c->lost)
		log_warning("%s connection: cannot connect: %s", c->name, msg);
	c->lost = true;
	return false;
}

/*
 * Note that a connection broke (logged once per loss).
 */
static void
conn_broke(Conn *c, const char *msg)
{
	if (!c->lost)
		log_warning("%s connection: lost: %s; reconnecting", c->name, msg);
	c->lost = true;
}

/*
 * Classify a failed result: should the call be retried, on this connection
 * or a new one?
 */
static ErrorKind
classify_error(PGconn *conn, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (PQstatus(conn) == CONNECTION_BAD || state == NULL)
		return ERR_CONNECTION;
	if (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
		strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0)
		return ERR_CONNECTION;
	if (strcmp(state, "55000") == 0)
		return ERR_STALE;
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
		strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0 ||
		strncmp(state, "53", 2) == 0)
		return ERR_TRANSIENT;
	return ERR_OTHER;
}

/*
 * The message of a failed result, with its detail, as one line.
 */
static void
result_error(PGconn *conn, const PGresult *res, char *buf, size_t buflen)
{
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;

	if (primary == NULL)
	{
		if (res != NULL && PQresultErrorMessage(res)[0] != '\0')
		{
			snprintf(buf, buflen, "%s", PQresultErrorMessage(res));
			one_line(buf);
		}
		else
			connection_error(conn, buf, buflen);
		return;
	}
	if (detail != NULL)
		snprintf(buf, buflen, "%s (%s)", primary, detail);
	else
		snprintf(buf, buflen, "%s", primary);
}

/*
 * Run one statement on a shared connection, retrying with backoff for at
 * most max_secs (0: one attempt) while the server is unreachable or the
 * error is transient.  On CALL_OK *res is the result (the caller clears
 * it); otherwise errbuf says why and sqlstate (6 bytes) holds the error's
 * SQLSTATE, or "".
 */
static CallStatus
call_with_retry(Conn *c, const char *sql, int nparams, const char *const *values,
				double max_secs, PGresult **res, char *errbuf, size_t errlen,
				char *sqlstate)
{
	double		deadline = mono_now() + max_secs;
	double		backoff = BACKOFF_MIN;

	*res = NULL;
	sqlstate[0] = '\0';
	for (;;)
	{
		PGresult   *r;
		ErrorKind	kind;
		const char *state;

		pthread_mutex_lock(&c->lock);
		if (!conn_ready(c))
		{
			connection_error(c->conn, errbuf, errlen);
			pthread_mutex_unlock(&c->lock);
			kind = ERR_CONNECTION;
		}
		else
		{
			r = PQexecParams(c->conn, sql, nparams, NULL, values, NULL, NULL, 0);
			if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK)
			{
				pthread_mutex_unlock(&c->lock);
				*res = r;
				return CALL_OK;
			}
			kind = classify_error(c->conn, r);
			result_error(c->conn, r, errbuf, errlen);
			state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
			snprintf(sqlstate, 6, "%s", state ? state : "");
			PQclear(r);
			if (kind == ERR_CONNECTION)
			{
				conn_broke(c, errbuf);
				/* reconnect at the next attempt, even if libpq did not notice */
				PQfinish(c->conn);
				c->conn = NULL;
			}
			pthread_mutex_unlock(&c->lock);
		}

		if (kind == ERR_STALE)
			return CALL_STALE;
		if (kind == ERR_OTHER)
			return CALL_REJECTED;
		if (mono_now() + backoff > deadline)
			return CALL_FAILED;
		sleep_secs(backoff);
		backoff = next_backoff(backoff);
	}
}


/* ---------------------------------------------------------------------
 * Running a command
 * ---------------------------------------------------------------------
 */

/*
 * Make a file descriptor non-blocking.
 */
static void
set_nonblocking(int fd)
{
	int			flags = fcntl(fd, F_GETFL);

	if (flags >= 0)
		(void) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/*
 * The command's environment: ours, without WORKFLOW_* variables, plus the
 * six WORKFLOW_* variables naming the task (always the last six entries).
 */
static char **
command_environment(const Task *t)
{
	extern char **environ;
	size_t		n = 0;
	size_t		i;
	char	  **envp;
	int			k = 0;

	while (environ[n] != NULL)
		n++;
	envp = pg_malloc((n + 7) * sizeof(char *));
	for (i = 0; i < n; i++)
	{
		if (strncmp(environ[i], "WORKFLOW_", 9) == 0)
			continue;
		envp[k++] = environ[i];
	}
	envp[k++] = psprintf("WORKFLOW_JOB_ID=%lld", t->job_id);
	envp[k++] = psprintf("WORKFLOW_TASK=%s", t->name);
	envp[k++] = psprintf("WORKFLOW_TASK_TYPE=%s", task_type);
	envp[k++] = psprintf("WORKFLOW_ATTEMPT=%d", t->attempt);
	envp[k++] = psprintf("WORKFLOW_LEASE=%lld", t->lease);
	envp[k++] = psprintf("WORKFLOW_WORKER_ID=%s", worker_id);
	envp[k] = NULL;
	return envp;
}

/*
 * Free what command_environment() allocated (the last six entries).
 */
static void
free_environment(char **envp)
{
	size_t		n = 0;
	size_t		i;

	while (envp[n] != NULL)
		n++;
	for (i = n - 6; i < n; i++)
		pg_free(envp[i]);
	pg_free(envp);
}

/*
 * Keep the last STDERR_TAIL bytes of the command's stderr.
 */
static void
keep_stderr_tail(CommandResult *r, const char *data, size_t len)
{
	if (len >= STDERR_TAIL)
	{
		memcpy(r->err, data + len - STDERR_TAIL, STDERR_TAIL);
		r->err_len = STDERR_TAIL;
		r->err_truncated = true;
		return;
	}
	if (r->err_len + len > STDERR_TAIL)
	{
		size_t		drop = r->err_len + len - STDERR_TAIL;

		memmove(r->err, r->err + drop, r->err_len - drop);
		r->err_len -= drop;
		r->err_truncated = true;
	}
	memcpy(r->err + r->err_len, data, len);
	r->err_len += len;
}

/*
 * Append to the command's stdout, up to MAX_OUTPUT bytes.  Past that, or
 * when memory runs out (the PQExpBuffer is then "broken"), the output is
 * too big: the task fails, the client goes on.
 */
static void
keep_stdout(CommandResult *r, const char *data, size_t len)
{
	if (r->out_too_big)
		return;
	if (r->out.len + len > MAX_OUTPUT)
	{
		r->out_too_big = true;
		return;
	}
	appendBinaryPQExpBuffer(&r->out, data, len);
	if (PQExpBufferBroken(&r->out))
		r->out_too_big = true;
}

/*
 * Close the file descriptors of a pipe that are still open (-1: closed).
 */
static void
close_pipe(int fds[2])
{
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	fds[0] = fds[1] = -1;
}

/*
 * Create the command's three pipes (close-on-exec: the child gets its ends
 * through dup2).  Returns 0, or the errno of a failure, having closed the
 * pipes made before it.
 */
static int
open_command_pipes(int in[2], int out[2], int err[2])
{
	int			save_errno;

	in[0] = in[1] = out[0] = out[1] = err[0] = err[1] = -1;
	if (pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 &&
		pipe2(err, O_CLOEXEC) == 0)
		return 0;
	save_errno = errno;
	close_pipe(in);
	close_pipe(out);
	close_pipe(err);
	return save_errno;
}

/*
 * Find the file COMMAND names as execvp(3) does, here in the parent, so
 * that the child does only async-signal-safe things: a name with a "/" is
 * used as it is, any other is looked for in the directories of PATH (an
 * empty entry is the current directory).  Returns 0 and the path (allocated
 * with pg_malloc), or ENOENT, or EACCES when only files that cannot be
 * executed were found.
 */
static int
find_command(const char *name, char **path)
{
	const char *dirs = getenv("PATH");
	int			error = ENOENT;

	if (strchr(name, '/') != NULL)
	{
		*path = pg_strdup(name);
		return 0;
	}
	if (dirs == NULL)
		dirs = "/usr/local/bin:/usr/bin:/bin";
	for (;;)
	{
		const char *colon = strchr(dirs, ':');
		size_t		len = colon ? (size_t) (colon - dirs) : strlen(dirs);
		char	   *candidate;
		struct stat st;

		candidate = len == 0 ? psprintf("./%s", name)
			: psprintf("%.*s/%s", (int) len, dirs, name);
		if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode))
		{
			if (access(candidate, X_OK) == 0)
			{
				*path = candidate;
				return 0;
			}
			error = EACCES;
		}
		pg_free(candidate);
		if (colon == NULL)
			return error;
		dirs = colon + 1;
	}
}

/*
 * Run the command in a forked child (see below); never returns.
 */
pg_noreturn static void exec_command(const char *path, char **envp, int in_fd,
									  int out_fd, int err_fd, int exec_fd,
									  pid_t parent);

/*
 * In the child, between fork and execve (async-signal-safe calls only):
 * make it a process group of its own (a terminal's ^C reaches only us, and
 * we drain; stops reach everything the command starts), have it killed
 * when the thread that forked it dies, put the pipes on its standard file
 * descriptors, give it default handling of the signals we block or ignore
 * and an empty signal mask, then run the command.  If execve fails, its
 * errno goes to the parent through exec_fd; it never returns.
 */
static void
exec_command(const char *path, char **envp, int in_fd, int out_fd, int err_fd,
			 int exec_fd, pid_t parent)
{
	static const int defaults[] = {
		SIGPIPE, SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD
	};
	struct sigaction sa;
	sigset_t	none;
	int			error;
	size_t		i;

	(void) setpgid(0, 0);
#if defined(HAVE_SYS_PRCTL_H) && defined(PR_SET_PDEATHSIG)
	(void) prctl(PR_SET_PDEATHSIG, SIGKILL);
#elif defined(HAVE_SYS_PROCCTL_H) && defined(PROC_PDEATHSIG_CTL)
	{
		int			sig = SIGKILL;

		(void) procctl(P_PID, 0, PROC_PDEATHSIG_CTL, &sig);
	}
#endif
	/* the client died before the request took effect */
	if (getppid() != parent)
		_exit(127);

	if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
		dup2(err_fd, STDERR_FILENO) < 0)
		goto failed;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < lengthof(defaults); i++)
		(void) sigaction(defaults[i], &sa, NULL);
	sigemptyset(&none);
	(void) sigprocmask(SIG_SETMASK, &none, NULL);

	execve(path, command, envp);

failed:
	error = errno;
	if (write(exec_fd, &error, sizeof(error)) < 0)
	{
		/* nothing to do: the parent then sees a command that exited 127 */
	}
	_exit(127);
}

/*
 * Start COMMAND for a task with the pipes on its standard file
 * descriptors, then close the child's ends here.  Returns 0 and the pid,
 * or the errno of finding the command, fork or execve (our ends are then
 * closed too, and the child, if any, reaped).
 */
static int
spawn_command(const Task *t, int in[2], int out[2], int err[2], pid_t *pid)
{
	char	  **envp = NULL;
	char	   *path = NULL;
	int			exec_pipe[2] = {-1, -1};
	pid_t		parent = getpid();
	int			rc;

	*pid = -1;
	rc = find_command(command[0], &path);
	if (rc == 0 && pipe2(exec_pipe, O_CLOEXEC) != 0)
		rc = errno;
	if (rc == 0)
	{
		envp = command_environment(t);
		*pid = fork();
		if (*pid == 0)
			exec_command(path, envp, in[0], out[1], err[1], exec_pipe[1], parent);
		if (*pid < 0)
			rc = errno;
		else
		{
			ssize_t		got;
			int			exec_error;

			/* both sides set the group, so that it exists when fork returns */
			(void) setpgid(*pid, *pid);
			close(exec_pipe[1]);
			exec_pipe[1] = -1;
			/* nothing (EOF at execve's close-on-exec) means it runs */
			do
				got = read(exec_pipe[0], &exec_error, sizeof(exec_error));
			while (got < 0 && errno == EINTR);
			if (got == sizeof(exec_error))
			{
				rc = exec_error;
				while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
					;
			}
		}
		free_environment(envp);
	}
	close_pipe(exec_pipe);
	if (path != NULL)
		pg_free(path);

	close(in[0]);
	close(out[1]);
	close(err[1]);
	in[0] = out[1] = err[1] = -1;
	if (rc != 0)
	{
		close_pipe(in);
		close_pipe(out);
		close_pipe(err);
	}
	return rc;
}

/*
 * Send SIGTERM to a slot's command (a process group), and SIGKILL
 * STOP_GRACE_SECS later (see enforce_bounds).  The caller holds
 * state_lock.
 */
static void
terminate_command_locked(Slot *slot)
{
	slot->stop_at = mono_now();
	kill(-slot->pid, SIGTERM);
}

/*
 * Stop a slot's command, for a reason; a command being stopped keeps its
 * first reason.  Without a command yet, the reason stays for it (see
 * set_slot_command).  The caller holds state_lock.
 */
static void
stop_command_locked(Slot *slot, StopReason reason)
{
	if (slot->stop != STOP_NONE)
		return;
	slot->stop = reason;
	if (slot->pid > 0)
		terminate_command_locked(slot);
}

/*
 * Tell the other threads which process group a slot runs, and stop at once
 * a command started for a task that is to be stopped already (a second
 * SIGTERM/SIGINT came, say).
 */
static void
set_slot_command(Slot *slot, pid_t pid)
{
	pthread_mutex_lock(&state_lock);
	slot->pid = pid;
	if (stopping && slot->stop == STOP_NONE)
		slot->stop = STOP_INTERRUPTED;
	if (slot->stop != STOP_NONE)
		terminate_command_locked(slot);
	pthread_mutex_unlock(&state_lock);
}

/*
 * Keep a running command within its bounds (see the file banner): start
 * stopping it when its task's deadline has passed or its lease has ended,
 * and send SIGKILL to a command still running STOP_GRACE_SECS after the
 * SIGTERM (whatever sent it).  Returns the seconds until the next moment
 * to check, at most 1.
 */
static double
enforce_bounds(Slot *slot, const Task *t, pid_t pid, double now)
{
	double		next = 1.0;

	pthread_mutex_lock(&state_lock);
	if (slot->stop == STOP_NONE)
	{
		if (t->lease_lost)
			stop_command_locked(slot, STOP_LEASE_LOST);
		else if (t->lease_end <= now)
			stop_command_locked(slot, STOP_LEASE_ENDED);
		else if (t->deadline > 0 && t->deadline <= now)
			stop_command_locked(slot, STOP_TIMEOUT);
	}
	if (slot->stop == STOP_NONE)
	{
		if (t->lease_end - now < next)
			next = t->lease_end - now;
		if (t->deadline > 0 && t->deadline - now < next)
			next = t->deadline - now;
	}
	else if (!slot->killed)
	{
		double		kill_at = slot->stop_at + STOP_GRACE_SECS;

		if (kill_at <= now)
		{
			kill(-pid, SIGKILL);
			slot->killed = true;
		}
		else if (kill_at - now < next)
			next = kill_at - now;
	}
	pthread_mutex_unlock(&state_lock);
	return next < 0.001 ? 0.001 : next;
}

/*
 * Write what the command's stdin takes of the input; close it when all is
 * written or the command stopped reading (EPIPE: fine, it does not read
 * its input).
 */
static void
feed_input(CommandPipes *p, const Task *t)
{
	ssize_t		w = write(p->in_fd, t->input + p->written, t->input_len - p->written);

	if (w > 0)
		p->written += w;
	if ((w < 0 && errno != EAGAIN && errno != EINTR) || p->written == t->input_len)
	{
		close(p->in_fd);
		p->in_fd = -1;
	}
}

/*
 * Read what is there on the command's stdout or stderr (fd), keep it, and
 * close the pipe at its end.
 */
static void
read_output(CommandPipes *p, int fd, CommandResult *r)
{
	char		buf[65536];
	ssize_t		got = read(fd, buf, sizeof(buf));

	if (got > 0)
	{
		if (fd == p->out_fd)
			keep_stdout(r, buf, got);
		else
			keep_stderr_tail(r, buf, got);
		return;
	}
	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	close(fd);
	if (fd == p->out_fd)
		p->out_fd = -1;
	else
		p->err_fd = -1;
}

/*
 * Close the pipes to a command that are still open.
 */
static void
close_command_pipes(CommandPipes *p)
{
	if (p->in_fd >= 0)
		close(p->in_fd);
	if (p->out_fd >= 0)
		close(p->out_fd);
	if (p->err_fd >= 0)
		close(p->err_fd);
	p->in_fd = p->out_fd = p->err_fd = -1;
}

/*
 * Wait (at most wait_secs) for the pipes to be ready, then serve each
 * ready one.  Returns false when poll(2) failed.
 */
static bool
serve_pipes(CommandPipes *p, const Task *t, CommandResult *r, double wait_secs)
{
	struct pollfd pfd[3];
	int			n = 0;
	int			i;
	int			rc;

	if (p->in_fd >= 0)
		pfd[n++] = (struct pollfd) {p->in_fd, POLLOUT, 0};
	if (p->out_fd >= 0)
		pfd[n++] = (struct pollfd) {p->out_fd, POLLIN, 0};
	if (p->err_fd >= 0)
		pfd[n++] = (struct pollfd) {p->err_fd, POLLIN, 0};
	rc = poll(pfd, n, (int) (wait_secs * 1000) + 1);
	if (rc < 0)
		return errno == EINTR;
	for (i = 0; rc > 0 && i < n; i++)
	{
		if (pfd[i].revents == 0)
			continue;
		if (pfd[i].fd == p->in_fd)
			feed_input(p, t);
		else
			read_output(p, pfd[i].fd, r);
	}
	return true;
}

/*
 * Exchange with a running command until it has ended and been reaped:
 * its input on stdin (then closed), stdout kept whole, the tail of stderr
 * kept, until both output pipes are closed (if the command exits while a
 * background process of its own keeps them open, reading stops a second
 * later), while enforce_bounds() keeps it within its bounds.  Its wait
 * status is left in r->status, and in r->stop why it was stopped, if it
 * was.
 */
static void
exchange_with_command(Slot *slot, pid_t pid, CommandPipes *p, const Task *t,
					  CommandResult *r)
{
	bool		reaped = false;
	double		reaped_at = 0;
	double		nap = 0.001;	/* between checks once the pipes are closed */

	set_nonblocking(p->in_fd);
	set_nonblocking(p->out_fd);
	set_nonblocking(p->err_fd);
	if (t->input_len == 0)
	{
		close(p->in_fd);
		p->in_fd = -1;
	}
	while (!reaped || p->out_fd >= 0 || p->err_fd >= 0)
	{
		double		now = mono_now();
		double		wait_secs;

		/* first: a command that has exited is not stopped */
		if (!reaped && waitpid(pid, &r->status, WNOHANG) == pid)
		{
			reaped = true;
			reaped_at = now;
			/* no signal may reach its process group id any more */
			pthread_mutex_lock(&state_lock);
			slot->pid = 0;
			r->stop = slot->stop;
			pthread_mutex_unlock(&state_lock);
		}
		if (reaped)
		{
			/* exited, but something it started may hold the pipes open */
			wait_secs = reaped_at + 1.0 - now;
			if (wait_secs <= 0)
				break;
		}
		else
			wait_secs = enforce_bounds(slot, t, pid, now);

		if (p->out_fd >= 0 || p->err_fd >= 0)
		{
			if (!serve_pipes(p, t, r, wait_secs))
				close_command_pipes(p);
		}
		else if (!reaped)
		{
			/* the pipes are closed: the command is ending, or closed them */
			sleep_secs(nap < wait_secs ? nap : wait_secs);
			nap = nap * 2 > 0.1 ? 0.1 : nap * 2;
		}
	}
	close_command_pipes(p);
}

/*
 * Run COMMAND for a task (see exchange_with_command) and say what it did;
 * the caller frees r->out.
 */
static void
run_command(Slot *slot, const Task *t, CommandResult *r)
{
	int			in[2];
	int			out[2];
	int			err[2];
	pid_t		pid;
	double		start = mono_now();
	CommandPipes pipes;

	memset(r, 0, sizeof(*r));
	initPQExpBuffer(&r->out);

	r->spawn_error = open_command_pipes(in, out, err);
	if (r->spawn_error == 0)
		r->spawn_error = spawn_command(t, in, out, err, &pid);
	if (r->spawn_error != 0)
		return;

	set_slot_command(slot, pid);
	pipes.in_fd = in[1];
	pipes.out_fd = out[0];
	pipes.err_fd = err[0];
	pipes.written = 0;
	exchange_with_command(slot, pid, &pipes, t, r);
	r->duration = mono_now() - start;
}


/* ---------------------------------------------------------------------
 * Worker threads: run a task and report it
 * ---------------------------------------------------------------------
 */

/*
 * Log the line of a finished task.
 */
static void
log_task(const Task *t, const char *outcome, double duration, const char *error)
{
	PQExpBufferData quoted;

	if (error == NULL || error[0] == '\0')
	{
		log_info("job=%lld task=%s attempt=%d outcome=%s duration=%.3fs",
				 t->job_id, t->name, t->attempt, outcome, duration);
		return;
	}
	initPQExpBuffer(&quoted);
	append_quoted_for_log(&quoted, error);
	log_info("job=%lld task=%s attempt=%d outcome=%s duration=%.3fs error=%s",
			 t->job_id, t->name, t->attempt, outcome, duration,
			 PQExpBufferBroken(&quoted) ? "(out of memory)" : quoted.data);
	termPQExpBuffer(&quoted);
}

/*
 * Is this text empty or white space only?
 */
static bool
is_blank(const char *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return false;
	return true;
}

/*
 * Log a report that did not go through (the stale, refused or lost
 * outcomes of report()).
 */
static void
log_unreported(const Task *t, const char *outcome, double duration,
			   const char *why, const char *errbuf)
{
	char	   *msg = psprintf("%s: %s", why, errbuf);

	log_task(t, outcome, duration, msg);
	pg_free(msg);
}

/*
 * Is a task's lease still ours: not found stale by extend_task, and not
 * ended by our clock?  When it is not, why says so.
 */
static bool
lease_still_ours(const Task *t, char *why, size_t len)
{
	bool		ours = false;

	pthread_mutex_lock(&state_lock);
	if (t->lease_lost)
		snprintf(why, len, "lease %lld is no longer valid", t->lease);
	else if (t->lease_end <= mono_now())
		snprintf(why, len, "lease %lld has ended", t->lease);
	else
		ours = true;
	pthread_mutex_unlock(&state_lock);
	return ours;
}

/*
 * Report a task through the reporting connection, with retries, and log
 * the task's line; a task whose lease is no longer ours is not reported
 * (its result is dropped, as for SQLSTATE 55000).  kind: 'c' complete
 * (value = output or NULL), 'f' fail (value = error), 'r' requeue.
 * Returns CALL_REJECTED only when log_rejection is false and the server
 * refused the value itself (SQLSTATE class 22 or 54000: not JSON, too
 * large); the caller then fails the task with the server's message, left
 * in errbuf, and nothing is logged.
 */
static CallStatus
report(const Task *t, char kind, const char *value, const char *outcome,
	   double duration, char *errbuf, size_t errlen, bool log_rejection)
{
	char		job[32];
	char		lease[32];
	const char *values[3];
	const char *sql = REQUEUE_SQL;
	int			nparams = 2;
	PGresult   *res;
	char		sqlstate[6];
	char		why[64];
	CallStatus	st;

	if (!lease_still_ours(t, errbuf, errlen))
	{
		log_unreported(t, "stale-lease", duration, "result dropped", errbuf);
		return CALL_STALE;
	}

	snprintf(job, sizeof(job), "%lld", t->job_id);
	snprintf(lease, sizeof(lease), "%lld", t->lease);
	values[0] = job;
	values[1] = lease;
	values[2] = value;
	if (kind == 'c' || kind == 'f')
	{
		sql = kind == 'c' ? COMPLETE_SQL : FAIL_SQL;
		nparams = 3;
	}

	st = call_with_retry(&report_conn, sql, nparams, values, REPORT_RETRY_SECS,
						 &res, errbuf, errlen, sqlstate);
	switch (st)
	{
		case CALL_OK:
			PQclear(res);
			log_task(t, outcome, duration, kind == 'f' ? value : NULL);
			break;
		case CALL_STALE:
			log_unreported(t, "stale-lease", duration, "result dropped", errbuf);
			break;
		case CALL_REJECTED:
			/* an output the server refuses: the caller fails the task */
			if (!log_rejection && (strncmp(sqlstate, "22", 2) == 0 ||
								   strcmp(sqlstate, "54000") == 0))
				break;
			snprintf(why, sizeof(why), "report refused (SQLSTATE %s)", sqlstate);
			log_unreported(t, "report-refused", duration, why, errbuf);
			return CALL_FAILED;
		case CALL_FAILED:
			snprintf(why, sizeof(why), "report given up after %.0f s", REPORT_RETRY_SECS);
			log_unreported(t, "report-lost", duration, why, errbuf);
			break;
	}
	return st;
}

/*
 * Fail a task with a message (made valid UTF-8 first).
 */
static void
fail_task(const Task *t, char *msg, double duration)
{
	char		errbuf[1024];

	sanitize_utf8(msg, strlen(msg));
	report(t, 'f', msg, "failed", duration, errbuf, sizeof(errbuf), true);
}

/*
 * Report a command that exited 0: complete the task with its output, or
 * fail it when the output cannot be one (too big, a NUL byte, or refused
 * by the server: not JSON, too large).
 */
static void
report_success(const Task *t, const CommandResult *r)
{
	const PQExpBufferData *out = &r->out;
	char		errbuf[1024];
	char	   *msg;

	if (r->out_too_big)
		msg = psprintf("the command's output is larger than 64 MB");
	else if (memchr(out->data, '\0', out->len) != NULL)
		msg = psprintf("the command's output is not valid JSON: it contains a NUL byte");
	else if (report(t, 'c', is_blank(out->data, out->len) ? NULL : out->data, "succeeded",
					r->duration, errbuf, sizeof(errbuf), false) == CALL_REJECTED)
		msg = psprintf("the command's output is not valid JSON or was refused: %s", errbuf);
	else
		return;
	fail_task(t, msg, r->duration);
	pg_free(msg);
}

/*
 * Report a command that exited with another status or was killed: fail
 * the task with the tail of its stderr, or with the status when it wrote
 * nothing there.
 */
static void
report_failure(const Task *t, CommandResult *r)
{
	char	   *msg;

	r->err[r->err_len] = '\0';
	sanitize_utf8(r->err, r->err_len);
	trim_trailing_space(r->err);
	if (r->err[0] != '\0')
		msg = psprintf("%s%s", r->err_truncated ? "..." : "", r->err);
	else if (WIFSIGNALED(r->status))
		msg = psprintf("killed by signal %d", WTERMSIG(r->status));
	else
		msg = psprintf("exit status %d", WEXITSTATUS(r->status));
	fail_task(t, msg, r->duration);
	pg_free(msg);
}

/*
 * Report a command stopped at its task's timeout: fail the task, saying
 * so, with the tail of its stderr if it wrote any.
 */
static void
report_timeout(const Task *t, CommandResult *r)
{
	char	   *msg;

	r->err[r->err_len] = '\0';
	sanitize_utf8(r->err, r->err_len);
	trim_trailing_space(r->err);
	/* whole seconds without an exponent, fractions as they are */
	msg = psprintf("the command did not finish within the task's timeout of %.*f s and was stopped%s%s%s",
				   t->timeout == floor(t->timeout) ? 0 : 3, t->timeout,
				   r->err[0] != '\0' ? "; its standard error: " : "",
				   r->err_truncated ? "..." : "", r->err);
	fail_task(t, msg, r->duration);
	pg_free(msg);
}

/*
 * Skip to a JSON value's end.  p is at its first character in valid JSON
 * (text the server printed); returns NULL at a premature end.
 */
static const char *
json_skip_value(const char *p, const char *end)
{
	int			depth = 0;

	if (p >= end)
		return NULL;
	if (*p != '"' && *p != '{' && *p != '[')
	{
		/* a number, true, false or null */
		while (p < end && strchr(",}] \t\r\n", *p) == NULL)
			p++;
		return p;
	}
	while (p < end)
	{
		if (*p == '"')
		{
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
			if (p >= end)
				return NULL;
		}
		else if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
			depth--;
		p++;
		if (depth == 0)
			return p;
	}
	return NULL;
}

/*
 * Skip JSON white space.
 */
static const char *
json_skip_space(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/*
 * The value of member key (a name without escapes) of the JSON object at
 * p, or NULL.
 */
static const char *
json_member(const char *p, const char *end, const char *key)
{
	size_t		keylen = strlen(key);

	p = json_skip_space(p, end);
	if (p >= end || *p != '{')
		return NULL;
	p++;
	for (;;)
	{
		const char *name;
		const char *name_end;

		p = json_skip_space(p, end);
		if (p >= end || *p != '"')
			return NULL;
		name = p + 1;
		name_end = json_skip_value(p, end);
		if (name_end == NULL)
			return NULL;
		p = json_skip_space(name_end, end);
		if (p >= end || *p != ':')
			return NULL;
		p = json_skip_space(p + 1, end);
		if ((size_t) (name_end - 1 - name) == keylen && memcmp(name, key, keylen) == 0)
			return p;
		p = json_skip_value(p, end);
		if (p == NULL)
			return NULL;
		p = json_skip_space(p, end);
		if (p >= end || *p != ',')
			return NULL;
		p++;
	}
}

/*
 * The workflow name and version of a task's job, from its input (the job
 * context: {"job": {..., "version": N, "workflow": "name"}, ...}).  Returns
 * false when they are not there; *workflow is allocated with pg_malloc.
 */
static bool
job_of_input(const Task *t, char **workflow, int *version)
{
	const char *end = t->input + t->input_len;
	const char *job = json_member(t->input, end, "job");
	const char *name;
	const char *name_end;
	const char *v;
	char	   *v_end;
	long		n;

	if (job == NULL)
		return false;
	name = json_member(job, end, "workflow");
	v = json_member(job, end, "version");
	if (name == NULL || v == NULL || *name != '"')
		return false;
	name_end = json_skip_value(name, end);
	/* workflow names are letters, digits, "_", "-" and "." */
	if (name_end == NULL || memchr(name, '\\', name_end - name) != NULL)
		return false;
	errno = 0;
	n = strtol(v, &v_end, 10);
	if (errno != 0 || v_end == v || n < 1 || n > INT_MAX)
		return false;
	*workflow = pnstrdup(name + 1, name_end - name - 2);
	*version = (int) n;
	return true;
}

/*
 * A task's timeout in seconds (0: none), remembered from an earlier task of
 * the same workflow version (definitions do not change), or read from
 * workflow.tasks.  Returns false, with errbuf saying why, when it cannot be
 * known.
 */
static bool
task_timeout(const Task *t, double *timeout, char *errbuf, size_t errlen)
{
	char	   *workflow;
	int			version;
	char		version_text[16];
	const char *values[3];
	TimeoutEntry *e;
	PGresult   *res;
	char		sqlstate[6];
	double		lease_left;

	if (!job_of_input(t, &workflow, &version))
	{
		snprintf(errbuf, errlen, "the task's input names no workflow and version");
		return false;
	}

	pthread_mutex_lock(&timeout_lock);
	for (e = timeouts; e != NULL; e = e->next)
		if (e->version == version && strcmp(e->workflow, workflow) == 0 &&
			strcmp(e->task, t->name) == 0)
			break;
	if (e != NULL)
		*timeout = e->timeout;
	pthread_mutex_unlock(&timeout_lock);
	if (e != NULL)
	{
		pg_free(workflow);
		return true;
	}

	/* retried while the lease lasts */
	pthread_mutex_lock(&state_lock);
	lease_left = t->lease_end - mono_now();
	pthread_mutex_unlock(&state_lock);
	snprintf(version_text, sizeof(version_text), "%d", version);
	values[0] = workflow;
	values[1] = version_text;
	values[2] = t->name;
	if (call_with_retry(&report_conn, TIMEOUT_SQL, 3, values,
						lease_left > 0 ? lease_left : 0, &res, errbuf, errlen,
						sqlstate) != CALL_OK)
	{
		pg_free(workflow);
		return false;
	}
	if (PQntuples(res) != 1)
	{
		snprintf(errbuf, errlen, "workflow \"%s\" version %d has no task \"%s\"",
				 workflow, version, t->name);
		PQclear(res);
		pg_free(workflow);
		return false;
	}
	*timeout = PQgetisnull(res, 0, 0) ? 0 : strtod(PQgetvalue(res, 0, 0), NULL);
	PQclear(res);

	pthread_mutex_lock(&timeout_lock);
	if (ntimeouts < MAX_TIMEOUTS_KEPT)
	{
		e = pg_malloc(sizeof(TimeoutEntry));
		e->workflow = workflow;
		e->version = version;
		e->task = pg_strdup(t->name);
		e->timeout = *timeout;
		e->next = timeouts;
		timeouts = e;
		ntimeouts++;
		workflow = NULL;
	}
	pthread_mutex_unlock(&timeout_lock);
	if (workflow != NULL)
		pg_free(workflow);
	return true;
}

/*
 * Give a task its deadline: the end of its first lease when it has a
 * timeout (the claim set that lease to the timeout).  A timeout that cannot
 * be read is not enforced, and a warning says so.
 */
static void
set_task_deadline(Task *t)
{
	double		timeout;
	char		errbuf[1024];

	if (!task_timeout(t, &timeout, errbuf, sizeof(errbuf)))
	{
		log_warning("job=%lld task=%s attempt=%d: the task's timeout is not enforced: could not read it: %s",
					t->job_id, t->name, t->attempt, errbuf);
		return;
	}
	if (timeout <= 0)
		return;
	pthread_mutex_lock(&state_lock);
	t->timeout = timeout;
	t->deadline = t->first_lease_end;
	pthread_mutex_unlock(&state_lock);
}

/*
 * Run one task and report its outcome.  A task whose lease is no longer
 * ours is not run.
 */
static void
run_task(Slot *slot, Task *t, bool skip)
{
	CommandResult r;
	char		errbuf[1024];
	StopReason	stop;

	if (!skip)
	{
		set_task_deadline(t);
		if (!lease_still_ours(t, errbuf, sizeof(errbuf)))
		{
			/* a client stopped after its poll, or a long lookup, say */
			log_unreported(t, "skipped", 0, "command not run", errbuf);
			return;
		}
		pthread_mutex_lock(&state_lock);
		skip = stopping || slot->stop == STOP_INTERRUPTED;
		pthread_mutex_unlock(&state_lock);
	}
	if (skip)
	{
		/* a second signal came before the task started: hand it back */
		report(t, 'r', NULL, "requeued", 0, errbuf, sizeof(errbuf), true);
		return;
	}

	run_command(slot, t, &r);
	stop = r.stop;

	if (r.spawn_error != 0)
	{
		char	   *msg;

		errno = r.spawn_error;
		msg = psprintf("could not run command \"%s\": %m", command[0]);
		fail_task(t, msg, r.duration);
		pg_free(msg);
	}
	else if (stop == STOP_INTERRUPTED)
	{
		/* stopped by a second SIGTERM/SIGINT: not the task's fault */
		report(t, 'r', NULL, "requeued", r.duration, errbuf, sizeof(errbuf), true);
	}
	else if (stop == STOP_LEASE_LOST || stop == STOP_LEASE_ENDED)
	{
		/* the task may be someone else's by now */
		snprintf(errbuf, sizeof(errbuf),
				 stop == STOP_LEASE_LOST ? "lease %lld is no longer valid" : "lease %lld has ended",
				 t->lease);
		log_unreported(t, "stale-lease", r.duration, "command stopped, result dropped", errbuf);
	}
	else if (stop == STOP_TIMEOUT)
		report_timeout(t, &r);
	else if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
		report_success(t, &r);
	else
		report_failure(t, &r);
	termPQExpBuffer(&r.out);
}

/*
 * Free a task.
 */
static void
free_task(Task *t)
{
	pg_free(t->name);
	pg_free(t->input);
	pg_free(t);
}

/*
 * A worker thread: take claimed tasks from the queue and run them, until
 * the poller stopped and the queue is empty.
 */
static void *
worker_main(void *arg)
{
	Slot	   *slot = arg;

	for (;;)
	{
		Task	   *t;
		bool		skip;

		pthread_mutex_lock(&state_lock);
		while (queue_head == NULL && !poll_done)
			pthread_cond_wait(&work_cond, &state_lock);
		if (queue_head == NULL)
		{
			pthread_mutex_unlock(&state_lock);
			break;
		}
		t = queue_head;
		queue_head = t->next;
		if (queue_head == NULL)
			queue_tail = NULL;
		slot->task = t;
		slot->pid = 0;
		slot->stop = STOP_NONE;
		slot->killed = false;
		skip = stopping;
		pthread_cond_signal(&heartbeat_cond);
		pthread_mutex_unlock(&state_lock);

		run_task(slot, t, skip);

		pthread_mutex_lock(&state_lock);
		slot->task = NULL;
		busy--;
		pthread_mutex_unlock(&state_lock);
		wake_poller();
		free_task(t);
	}
	return NULL;
}


/* ---------------------------------------------------------------------
 * Heartbeat: extend the leases of long tasks
 * ---------------------------------------------------------------------
 */

/*
 * The slot that still runs this task with this lease, or NULL.  A task is
 * valid only while a slot runs it.  The caller holds state_lock.
 */
static Slot *
slot_running_task(const Task *t, long long job_id, long long lease)
{
	int			i;

	for (i = 0; i < nthreads; i++)
		if (slots[i].task == t && t->job_id == job_id && t->lease == lease)
			return &slots[i];
	return NULL;
}

/*
 * Put the new end of a lease (extend_task's answer, on the server's clock)
 * onto our monotonic clock (now), and plan the next extension at half of
 * it.  The caller holds state_lock.
 */
static void
set_extended_lease(Task *t, const PGresult *res, double now)
{
	double		expires = strtod(PQgetvalue(res, 0, 0), NULL);
	double		server_now = strtod(PQgetvalue(res, 0, 1), NULL);

	t->lease_start = now;
	t->lease_end = now + (expires - server_now);
	t->next_extend = t->lease_start + (t->lease_end - t->lease_start) / 2;
	clock_offset = server_now - real_now();
}

/*
 * Plan another try to extend a lease soon, well before it ends: in a
 * quarter of what is left, between 0.1 and 1 second.  The caller holds
 * state_lock.
 */
static void
retry_extension_soon(Task *t, double now)
{
	double		again = (t->lease_end - now) / 4;

	if (again > 1.0)
		again = 1.0;
	if (again < 0.1)
		again = 0.1;
	t->next_extend = now + again;
}

/*
 * Extend one lease.  Called without state_lock.
 */
static void
extend_lease(Task *t, long long job_id, long long lease)
{
	char		job[32];
	char		lease_text[32];
	const char *values[2];
	PGresult   *res;
	char		errbuf[1024];
	char		sqlstate[6];
	CallStatus	st;
	double		now;
	Slot	   *slot;

	snprintf(job, sizeof(job), "%lld", job_id);
	snprintf(lease_text, sizeof(lease_text), "%lld", lease);
	values[0] = job;
	values[1] = lease_text;
	st = call_with_retry(&heartbeat_conn, EXTEND_SQL, 2, values, 0, &res,
						 errbuf, sizeof(errbuf), sqlstate);
	now = mono_now();

	pthread_mutex_lock(&state_lock);
	slot = slot_running_task(t, job_id, lease);
	if (slot == NULL)
	{
		/* it ended meanwhile: t may be freed already */
	}
	else if (st == CALL_OK)
		set_extended_lease(t, res, now);
	else if (st == CALL_STALE)
	{
		/* logged under the lock: the worker frees t once it is released */
		t->lease_lost = true;
		log_warning("job=%lld task=%s attempt=%d lease %lld lost (its command is stopped and its result dropped): %s",
					job_id, t->name, t->attempt, lease, errbuf);
		stop_command_locked(slot, STOP_LEASE_LOST);
	}
	else
	{
		retry_extension_soon(t, now);
		if (st == CALL_REJECTED)
			log_warning("job=%lld task=%s attempt=%d could not extend lease %lld (SQLSTATE %s): %s",
						job_id, t->name, t->attempt, lease, sqlstate, errbuf);
	}
	pthread_mutex_unlock(&state_lock);
	if (st == CALL_OK)
		PQclear(res);
}

/*
 * The heartbeat thread: sleep until the earliest moment a running task's
 * lease is half used, then extend it.  A lease that has ended by our clock
 * is not extended: the task is no longer ours (see the file banner).
 */
static void *
heartbeat_main(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&state_lock);
	while (!heartbeat_done)
	{
		double		now = mono_now();
		double		earliest = -1;
		Task	   *due = NULL;
		int			i;

		for (i = 0; i < nthreads; i++)
		{
			Task	   *t = slots[i].task;

			if (t == NULL || t->lease_lost || t->lease_end <= now)
				continue;
			if (t->next_extend <= now)
			{
				due = t;
				break;
			}
			if (earliest < 0 || t->next_extend < earliest)
				earliest = t->next_extend;
		}
		if (due != NULL)
		{
			long long	job_id = due->job_id;
			long long	lease = due->lease;

			pthread_mutex_unlock(&state_lock);
			extend_lease(due, job_id, lease);
			pthread_mutex_lock(&state_lock);
			continue;
		}
		if (earliest < 0)
			pthread_cond_wait(&heartbeat_cond, &state_lock);
		else
		{
			struct timespec ts;
			double		until;

			/* the condition variable runs on the monotonic clock */
			clock_gettime(CLOCK_MONOTONIC, &ts);
			until = ts.tv_sec + ts.tv_nsec / 1e9 + (earliest - now);
			ts.tv_sec = (time_t) until;
			ts.tv_nsec = (long) ((until - (double) ts.tv_sec) * 1e9);
			pthread_cond_timedwait(&heartbeat_cond, &state_lock, &ts);
		}
	}
	pthread_mutex_unlock(&state_lock);
	return NULL;
}


/* ---------------------------------------------------------------------
 * Signals
 * ---------------------------------------------------------------------
 */

/*
 * The signal thread: every handled signal is blocked in all threads and
 * received here with sigwait().
 */
static void *
signal_main(void *arg)
{
	sigset_t   *set = arg;

	for (;;)
	{
		int			sig;
		int			i;

		if (sigwait(set, &sig) != 0)
			continue;
		pthread_mutex_lock(&state_lock);
		switch (sig)
		{
			case SIGUSR1:
				if (!paused && !draining)
					log_info("SIGUSR1: pausing polling");
				paused = true;
				break;
			case SIGUSR2:
				if (paused && !draining)
					log_info("SIGUSR2: resuming polling");
				paused = false;
				break;
			default:
				if (!draining)
				{
					draining = true;
					log_info("%s: draining: no more polling, finishing %d running task(s)",
							 sig == SIGTERM ? "SIGTERM" : "SIGINT", busy);
				}
				else if (!stopping)
				{
					stopping = true;
					log_info("%s again: stopping the running commands and handing their tasks back",
							 sig == SIGTERM ? "SIGTERM" : "SIGINT");
					for (i = 0; i < nthreads; i++)
						if (slots[i].task != NULL)
							stop_command_locked(&slots[i], STOP_INTERRUPTED);
				}
				break;
		}
		pthread_mutex_unlock(&state_lock);
		wake_poller();
	}
	return NULL;
}



/* ---------------------------------------------------------------------
 * The poller (main thread)
 * ---------------------------------------------------------------------
 */

/*
 * Read a binary int8 (or timestamptz) field: 8 bytes in network order.
 */
static long long
get_int64(const char *p)
{
	uint64		v;

	memcpy(&v, p, sizeof(v));
	return (long long) (int64) pg_ntoh64(v);
}

/*
 * Read a binary int4 field: 4 bytes in network order.
 */
static int
get_int32(const char *p)
{
	uint32		v;

	memcpy(&v, p, sizeof(v));
	return (int) (int32) pg_ntoh32(v);
}

/*
 * Are the rows of a poll (binary format) as expected: six columns, none
 * NULL but the input, integers of the right sizes, jsonb of version 1?
 */
static bool
poll_rows_valid(const PGresult *res)
{
	int			i;

	if (PQnfields(res) != 6 || PQbinaryTuples(res) != 1)
		return false;
	for (i = 0; i < PQntuples(res); i++)
	{
		int			f;

		for (f = 0; f < 5; f++)
			if (PQgetisnull(res, i, f))
				return false;
		if (PQgetlength(res, i, 0) != 8 || PQgetlength(res, i, 2) != 4 ||
			PQgetlength(res, i, 3) != 8 || PQgetlength(res, i, 4) != 8)
			return false;
		if (!PQgetisnull(res, i, 5) &&
			(PQgetlength(res, i, 5) < 1 || PQgetvalue(res, i, 5)[0] != 1))
			return false;		/* jsonb's binary format version 1 */
	}
	return true;
}

/*
 * A task from row i of a poll.  Its lease, given by the server's clock
 * (lease_expires_at), goes onto our monotonic clock: now is that clock,
 * real the real-time clock at the same moment, offset the server's clock
 * minus ours.  The input gets a final newline, for commands reading lines.
 */
static Task *
task_from_row(const PGresult *res, int i, double now, double real, double offset)
{
	Task	   *t = pg_malloc0(sizeof(Task));
	double		expires;

	t->job_id = get_int64(PQgetvalue(res, i, 0));
	t->name = pg_strdup(PQgetvalue(res, i, 1));
	t->attempt = get_int32(PQgetvalue(res, i, 2));
	t->lease = get_int64(PQgetvalue(res, i, 3));
	/* timestamptz: microseconds since 2000-01-01 UTC */
	expires = get_int64(PQgetvalue(res, i, 4)) / 1e6 + PG_EPOCH_OFFSET;
	if (PQgetisnull(res, i, 5))
	{
		t->input = pg_strdup("null\n");
		t->input_len = 5;
	}
	else
	{
		/* after jsonb's version byte */
		size_t		len = PQgetlength(res, i, 5) - 1;

		t->input = pg_malloc(len + 2);
		memcpy(t->input, PQgetvalue(res, i, 5) + 1, len);
		t->input[len] = '\n';
		t->input[len + 1] = '\0';
		t->input_len = len + 1;
	}
	t->lease_start = now;
	t->lease_end = now + (expires - (real + offset));
	if (t->lease_end < now)
		t->lease_end = now;
	t->first_lease_end = t->lease_end;
	t->next_extend = t->lease_start + (t->lease_end - t->lease_start) / 2;
	return t;
}

/*
 * Turn the rows of a poll (binary format) into tasks on the queue, and
 * wake the worker threads.  Returns the number of tasks, or -1 when the
 * rows are not as expected.
 */
static int
queue_tasks(PGresult *res)
{
	int			n = PQntuples(res);
	int			i;
	double		now = mono_now();
	double		real = real_now();
	double		offset;
	Task	   *first = NULL;
	Task	   *last = NULL;

	if (!poll_rows_valid(res))
		return -1;
	if (n == 0)
		return 0;

	pthread_mutex_lock(&state_lock);
	offset = clock_offset;
	pthread_mutex_unlock(&state_lock);

	for (i = 0; i < n; i++)
	{
		Task	   *t = task_from_row(res, i, now, real, offset);

		if (last)
			last->next = t;
		else
			first = t;
		last = t;
	}

	pthread_mutex_lock(&state_lock);
	if (queue_tail)
		queue_tail->next = first;
	else
		queue_head = first;
	queue_tail = last;
	busy += n;
	pthread_cond_broadcast(&work_cond);
	pthread_mutex_unlock(&state_lock);
	return n;
}

/*
 * Should a pending poll be canceled (pause or drain)?
 */
static bool
poll_unwanted(void)
{
	bool		r;

	pthread_mutex_lock(&state_lock);
	r = draining || paused;
	pthread_mutex_unlock(&state_lock);
	return r;
}

/*
 * Reconnect the poll connection without blocking signals' effects: the
 * reset runs asynchronously and is abandoned when a drain starts.
 * Returns true when connected.
 */
static bool
poll_reconnect(Conn *c)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	if (c->conn == NULL)
	{
		c->conn = open_connection();
		return c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK;
	}
	if (!PQresetStart(c->conn))
		return false;
	for (;;)
	{
		struct pollfd pfd[2];

		if (st == PGRES_POLLING_OK)
			return true;
		if (st == PGRES_POLLING_FAILED)
			return false;
		pfd[0] = (struct pollfd) {PQsocket(c->conn),
		st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
		pfd[1] = (struct pollfd) {wake_pipe[0], POLLIN, 0};
		if (pfd[0].fd < 0)
			return false;
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			return false;
		if (pfd[1].revents)
		{
			drain_wakeups();
			pthread_mutex_lock(&state_lock);
			if (draining)
			{
				pthread_mutex_unlock(&state_lock);
				return false;
			}
			pthread_mutex_unlock(&state_lock);
		}
		if (pfd[0].revents)
			st = PQresetPoll(c->conn);
	}
}

/*
 * Cancel the statement running on a connection (errors are ignored: the
 * cancel is sent again a second later).
 */
static void
send_cancel(PGconn *conn)
{
	PGcancel   *cancel = PQgetCancel(conn);
	char		errbuf[256];

	if (cancel != NULL)
	{
		(void) PQcancel(cancel, errbuf, sizeof(errbuf));
		PQfreeCancel(cancel);
	}
}

/*
 * Send one poll and wait for its answer, canceling it when a pause or a
 * drain is requested meanwhile (and again every second until the server
 * acts on it: a cancel that arrives before the statement starts is
 * ignored).  Returns the result, or NULL when the connection failed.
 */
static PGresult *
poll_once(Conn *c, int count)
{
	char		count_text[16];
	const char *values[5];
	int			formats[5] = {0, 0, 0, 0, 0};
	double		cancel_sent = -1;
	PGresult   *res = NULL;
	PGresult   *r;

	snprintf(count_text, sizeof(count_text), "%d", count);
	values[0] = task_type;
	values[1] = worker_id;
	values[2] = count_text;
	values[3] = wait_text;
	values[4] = task_domain;
	if (!PQsendQueryParams(c->conn, POLL_SQL, 5, NULL, values, NULL, formats, 1))
		return NULL;

	for (;;)
	{
		struct pollfd pfd[2];
		int			timeout = -1;

		if (!PQconsumeInput(c->conn))
			break;
		if (!PQisBusy(c->conn))
			break;
		if (poll_unwanted() && (cancel_sent < 0 || mono_now() - cancel_sent >= CANCEL_REPEAT_SECS))
		{
			send_cancel(c->conn);
			cancel_sent = mono_now();
		}
		if (cancel_sent >= 0)
			timeout = (int) (CANCEL_REPEAT_SECS * 1000);
		pfd[0] = (struct pollfd) {PQsocket(c->conn), POLLIN, 0};
		pfd[1] = (struct pollfd) {wake_pipe[0], POLLIN, 0};
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			drain_wakeups();
	}
	while ((r = PQgetResult(c->conn)) != NULL)
	{
		if (res == NULL)
			res = r;
		else
			PQclear(r);
		if (PQstatus(c->conn) == CONNECTION_BAD)
			break;
	}
	return res;
}

/* The poll loop's memory between two rounds */
typedef struct PollState
{
	double		backoff;		/* before the next retry */
	bool		said_paused;	/* "polling paused" was logged */
} PollState;

/*
 * How many tasks may the next poll claim?  Waits while polling is paused
 * (logging the pause and the resumption) and while every thread is busy.
 * Returns -1 when a drain started, 0 when woken without a free thread.
 */
static int
free_threads_to_poll_for(PollState *ps)
{
	int			free_threads;
	bool		is_paused;

	pthread_mutex_lock(&state_lock);
	if (draining)
	{
		pthread_mutex_unlock(&state_lock);
		return -1;
	}
	is_paused = paused;
	free_threads = nthreads - busy;
	pthread_mutex_unlock(&state_lock);

	if (is_paused)
	{
		if (!ps->said_paused)
			log_info("polling paused");
		ps->said_paused = true;
		wait_for_wakeup(-1);
		return 0;
	}
	if (ps->said_paused)
		log_info("polling resumed");
	ps->said_paused = false;
	if (free_threads <= 0)
	{
		wait_for_wakeup(-1);
		return 0;
	}
	return free_threads < batch_size ? free_threads : batch_size;
}

/*
 * Make sure the poll connection is up, reconnecting (with backoff, and
 * giving up when a pause or drain comes) when it is not.  Returns whether
 * it is up.
 */
static bool
poll_connection_ready(Conn *c, PollState *ps)
{
	char		errbuf[1024];

	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK)
		return true;
	if (poll_reconnect(c))
	{
		if (c->lost)
			log_info("poll connection: reconnected");
		c->lost = false;
		return true;
	}
	if (poll_unwanted())
		return false;
	connection_error(c->conn, errbuf, sizeof(errbuf));
	log_warning("poll connection: cannot connect: %s; retrying in %.1f s",
				errbuf, ps->backoff);
	c->lost = true;
	wait_for_wakeup((int) (ps->backoff * 1000));
	ps->backoff = next_backoff(ps->backoff);
	return false;
}

/*
 * Queue the tasks of a successful poll.  Returns -1 to poll again, or the
 * exit status (1) when the rows are not what this client understands.
 */
static int
take_polled_tasks(PGresult *res, PollState *ps)
{
	int			n = queue_tasks(res);

	PQclear(res);
	if (n < 0)
	{
		log_error("poll: unexpected result from workflow.poll_tasks(); is the extension's version right?");
		return 1;
	}
	ps->backoff = BACKOFF_MIN;
	if (n == 0 && wait_secs == 0)
		wait_for_wakeup((int) (IDLE_POLL_SECS * 1000));
	return -1;
}

/*
 * Deal with a failed poll: ignore our own cancel, stop on an invalid
 * argument (nothing will change), reconnect after a connection loss (at
 * once the first time), retry anything else with backoff.  Returns -1 to
 * poll again, or the exit status (2) when the client must stop.
 */
static int
handle_poll_error(Conn *c, PGresult *res, PollState *ps)
{
	ErrorKind	kind = classify_error(c->conn, res);
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char		errbuf[1024];
	char		sqlstate[6];

	result_error(c->conn, res, errbuf, sizeof(errbuf));
	snprintf(sqlstate, sizeof(sqlstate), "%s", state ? state : "");
	PQclear(res);

	if (strcmp(sqlstate, "57014") == 0 && poll_unwanted())
		return -1;				/* our own cancel (pause, drain) */
	if (strncmp(sqlstate, "22", 2) == 0)
	{
		/* bad task type, domain, worker id or wait */
		log_error("poll: %s (SQLSTATE %s); stopping", errbuf, sqlstate);
		pthread_mutex_lock(&state_lock);
		draining = true;
		pthread_mutex_unlock(&state_lock);
		return 2;
	}
	if (kind == ERR_CONNECTION)
	{
		if (!c->lost)
			log_warning("poll connection: lost: %s; reconnecting", errbuf);
		c->lost = true;
		if (PQstatus(c->conn) == CONNECTION_OK)
		{
			PQfinish(c->conn);
			c->conn = NULL;
		}
		else if (ps->backoff > BACKOFF_MIN)
			wait_for_wakeup((int) (ps->backoff * 1000));
		ps->backoff = next_backoff(ps->backoff);
		return -1;
	}
	log_warning("poll: %s%s%s%s; retrying in %.1f s", errbuf,
				sqlstate[0] ? " (SQLSTATE " : "", sqlstate, sqlstate[0] ? ")" : "",
				ps->backoff);
	wait_for_wakeup((int) (ps->backoff * 1000));
	ps->backoff = next_backoff(ps->backoff);
	return -1;
}

/*
 * The poll loop: claim tasks for the free worker threads until a drain
 * starts.  Returns the exit status.
 */
static int
poll_loop(void)
{
	Conn	   *c = &poll_conn;
	PollState	ps = {BACKOFF_MIN, false};

	for (;;)
	{
		int			count = free_threads_to_poll_for(&ps);
		PGresult   *res;
		int			status;

		if (count < 0)
			return 0;
		if (count == 0 || !poll_connection_ready(c, &ps))
			continue;
		res = poll_once(c, count);
		if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK)
			status = take_polled_tasks(res, &ps);
		else
			status = handle_poll_error(c, res, &ps);
		if (status >= 0)
			return status;
	}
}


/* ---------------------------------------------------------------------
 * Start-up
 * ---------------------------------------------------------------------
 */

/*
 * Print the usage.
 */
static void
usage(void)
{
	printf("%s runs the external tasks of the workflow extension: it polls PostgreSQL\n"
		   "for tasks of one type and runs COMMAND for each one, with the task's input\n"
		   "(the job context, JSON) on its standard input.  COMMAND prints its output\n"
		   "(JSON, or nothing for null) on standard output and exits 0, or exits with\n"
		   "another status to fail the task (the error is the tail of its standard error).\n\n",
		   progname);
	printf("Usage:\n"
		   "  %s -d CONNINFO -t TASK_TYPE [OPTION]... -- COMMAND [ARG]...\n\n", progname);
	printf("Options:\n"
		   "  -d, --dbname=CONNINFO    database to connect to (connection string or URI)\n"
		   "  -t, --task-type=TYPE     task type to poll for\n"
		   "  -n, --threads=N          tasks run at the same time (default 1)\n"
		   "      --domain=DOMAIN      poll this domain's tasks first, then tasks without one\n"
		   "      --batch=N            claim at most N tasks per poll (default: N threads)\n"
		   "      --wait=INTERVAL      long poll: wait up to INTERVAL for a task\n"
		   "                           (default '20 s', at most 5 minutes; 0 polls every second)\n"
		   "      --worker-id=ID       worker id (default HOSTNAME:PID)\n"
		   "  -V, --version            print the version, then exit\n"
		   "  -h, --help               print this help, then exit\n\n");
	printf("The command's environment has WORKFLOW_JOB_ID, WORKFLOW_TASK, WORKFLOW_TASK_TYPE,\n"
		   "WORKFLOW_ATTEMPT, WORKFLOW_LEASE and WORKFLOW_WORKER_ID.  Leases of long tasks\n"
		   "are extended while the command runs.  A command still running at its task's\n"
		   "timeout, or when its lease ends or is no longer valid, is stopped (SIGTERM to\n"
		   "its process group, SIGKILL %.0f s later): the task then fails, or its result\n"
		   "is dropped.  A task whose lease has ended is not started.  On Linux and FreeBSD\n"
		   "the commands are killed when the client is.\n\n", STOP_GRACE_SECS);
	printf("Signals: SIGUSR1 pauses polling, SIGUSR2 resumes it.  SIGTERM or SIGINT drains:\n"
		   "no more polling, the running tasks are finished and reported, then exit 0;\n"
		   "a second one stops the running commands and hands their tasks back.\n\n");
	printf("Exit status: 0 after a drain, 2 for bad usage or when the database cannot be\n"
		   "reached at start, 1 for other errors.\n");
}

/*
 * Complain about the command line (fmt NULL: getopt_long already did),
 * point to --help and exit with status 2.
 */
pg_noreturn static void bad_usage(const char *fmt,...) pg_attribute_printf(1, 2);

/*
 * (see the prototype above)
 */
static void
bad_usage(const char *fmt,...)
{
	va_list		ap;

	if (fmt != NULL)
	{
		va_start(ap, fmt);
		pg_log_generic_v(PG_LOG_ERROR, PG_LOG_PRIMARY, fmt, ap);
		va_end(ap);
	}
	pg_log_error_hint("Try \"%s --help\" for more information.", progname);
	exit(2);
}

/*
 * Parse a positive integer option within limits, or exit.
 */
static int
int_option(const char *name, const char *value, int lo, int hi)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < lo || v > hi)
		bad_usage("invalid value \"%s\" for %s: an integer from %d to %d is expected",
				  value, name, lo, hi);
	return (int) v;
}

/*
 * Does a name follow the extension's rule (1 to 128 letters, digits, "_",
 * "-" or ".")?
 */
static bool
valid_name(const char *s)
{
	size_t		len = strlen(s);
	size_t		i;

	if (len < 1 || len > 128)
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/*
 * Read the options into the settings, or exit (0 for --help and
 * --version, 2 for mistakes).  Returns the index of the first argument
 * after them: the command.
 */
static int
parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"task-type", required_argument, NULL, 't'},
		{"threads", required_argument, NULL, 'n'},
		{"domain", required_argument, NULL, 1},
		{"batch", required_argument, NULL, 2},
		{"wait", required_argument, NULL, 3},
		{"worker-id", required_argument, NULL, 4},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	/* "+": options end at the first non-option (the command) */
	while ((c = getopt_long(argc, argv, "+d:t:n:hV", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				conninfo = optarg;
				break;
			case 't':
				task_type = optarg;
				break;
			case 'n':
				nthreads = int_option("-n/--threads", optarg, 1, MAX_THREADS);
				break;
			case 1:
				task_domain = optarg;
				break;
			case 2:
				batch_size = int_option("--batch", optarg, 1, MAX_BATCH);
				break;
			case 3:
				wait_text = optarg;
				break;
			case 4:
				worker_id = optarg;
				break;
			case 'h':
				usage();
				exit(0);
			case 'V':
				printf("%s (workflow) %s\n", progname, WORKER_VERSION);
				exit(0);
			default:
				/* getopt_long printed the complaint */
				bad_usage(NULL);
		}
	}
	return optind;
}

/*
 * Check that the database, the task type and the command are given, and
 * that the task type and domain are valid names, or exit with status 2.
 */
static void
check_arguments(int argc, char **argv, int first_arg)
{
	if (conninfo == NULL)
		bad_usage("no database given: use -d CONNINFO");
	if (task_type == NULL)
		bad_usage("no task type given: use -t TASK_TYPE");
	if (first_arg >= argc)
		bad_usage("no command given: put it after \"--\"");
	command = argv + first_arg;
	if (command[0][0] == '\0')
		bad_usage("the command is empty");

	if (!valid_name(task_type))
		bad_usage("invalid task type \"%s\": 1 to 128 letters, digits, \"_\", \"-\" or \".\" are expected",
				  task_type);
	if (task_domain != NULL && !valid_name(task_domain))
		bad_usage("invalid domain \"%s\": 1 to 128 letters, digits, \"_\", \"-\" or \".\" are expected",
				  task_domain);
}

/*
 * Check the worker id given with --worker-id (1 to 200 printable
 * characters), or make the default one, HOSTNAME:PID.
 */
static void
set_worker_id(void)
{
	size_t		len;
	size_t		i;

	if (worker_id == NULL)
	{
		char		host[256];

		if (gethostname(host, sizeof(host)) != 0)
			strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		worker_id = psprintf("%s:%d", host, (int) getpid());
		return;
	}
	len = strlen(worker_id);
	if (len < 1 || len > 200)
		bad_usage("invalid worker id: 1 to 200 printable characters are expected");
	for (i = 0; i < len; i++)
		if ((unsigned char) worker_id[i] < 0x20 || worker_id[i] == 0x7f)
			bad_usage("invalid worker id: 1 to 200 printable characters are expected");
}

/*
 * Parse a connection string or URI now, to say what is wrong with it before
 * connecting; exit with status 2 if it is malformed.  As for libpq, a
 * string without "=" that is not a URI is a database name.
 */
static void
check_conninfo(void)
{
	char	   *err = NULL;
	PQconninfoOption *opts;

	if (strchr(conninfo, '=') == NULL && strncmp(conninfo, "postgresql://", 13) != 0 &&
		strncmp(conninfo, "postgres://", 11) != 0)
		return;
	opts = PQconninfoParse(conninfo, &err);
	if (opts != NULL)
	{
		PQconninfoFree(opts);
		return;
	}
	if (err != NULL)
	{
		trim_trailing_space(err);
		pg_log_error("invalid connection string \"%s\": %s", conninfo, err);
		PQfreemem(err);
	}
	else
		pg_log_error("out of memory");
	exit(2);
}

/*
 * Parse the command line into the settings, or exit (0 for --help and
 * --version, 2 for mistakes).
 */
static void
parse_arguments(int argc, char **argv)
{
	check_arguments(argc, argv, parse_options(argc, argv));
	if (batch_size == 0)
		batch_size = nthreads;
	set_worker_id();
	check_conninfo();
}

/*
 * Connect the poll connection, check --wait and measure the server's clock
 * offset.  Exits with status 2 when the database cannot be reached.
 */
static void
startup_checks(void)
{
	PGconn	   *conn = open_connection();
	PGresult   *res;
	const char *values[1] = {wait_text};
	double		before;
	double		after;
	char		msg[1024];

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		connection_error(conn, msg, sizeof(msg));
		pg_log_error("could not connect to the database: %s", msg);
		exit(2);
	}
	before = real_now();
	res = PQexecParams(conn, STARTUP_SQL, 1, NULL, values, NULL, NULL, 0);
	after = real_now();
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		result_error(conn, res, msg, sizeof(msg));
		if (state != NULL && strncmp(state, "22", 2) == 0)
			pg_log_error("invalid value \"%s\" for --wait: %s", wait_text, msg);
		else
			pg_log_error("could not query the database: %s", msg);
		exit(2);
	}
	clock_offset = strtod(PQgetvalue(res, 0, 0), NULL) - (before + after) / 2;
	wait_secs = strtod(PQgetvalue(res, 0, 1), NULL);
	if (wait_secs < 0 || wait_secs > MAX_WAIT_SECS)
	{
		pg_log_error("invalid value \"%s\" for --wait: from 0 to 5 minutes is expected",
					 wait_text);
		exit(2);
	}
	if (strcmp(PQgetvalue(res, 0, 2), "t") != 0)
		log_warning("the workflow extension is not installed in this database; polls fail until it is");
	PQclear(res);
	poll_conn.conn = conn;
}

/*
 * Make sure file descriptors 0, 1 and 2 are open, so that no pipe of ours
 * ever takes their place.
 */
static void
ensure_standard_fds(void)
{
	int			fd;

	for (fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
		{
			int			n = open("/dev/null", O_RDWR);

			if (n >= 0 && n != fd)
				close(n);
		}
}

/*
 * Ignore SIGPIPE (writes to a command that stopped reading fail with EPIPE
 * instead), make sure SIGCHLD is not ignored (the commands would then not
 * be waited for), and block the signals the signal thread takes, in this
 * thread and so in every thread started after.  *set gets those signals.
 */
static void
block_signals(sigset_t *set)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(set);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGUSR2);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	pthread_sigmask(SIG_BLOCK, set, NULL);
}

/*
 * Set up what the threads share: the poller's self-pipe, the heartbeat's
 * condition variable (on the monotonic clock, as the leases) and the
 * worker slots.  Exits with status 1 on failure.
 */
static void
init_shared_state(void)
{
	pthread_condattr_t cattr;

	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
	{
		pg_log_error("could not create a pipe: %m");
		exit(1);
	}
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&heartbeat_cond, &cattr);
	pthread_condattr_destroy(&cattr);
	slots = pg_malloc0(nthreads * sizeof(Slot));
}

/*
 * Start a thread, or exit with status 1.
 */
static void
start_thread(pthread_t *thread, void *(*start) (void *), void *arg)
{
	int			rc = pthread_create(thread, NULL, start, arg);

	if (rc != 0)
	{
		errno = rc;
		pg_log_error("could not start a thread: %m");
		exit(1);
	}
}

/*
 * The end of a drain: let the worker threads finish what was claimed, then
 * stop the heartbeat and close the connections.
 */
static void
stop_threads(pthread_t heartbeat_thread)
{
	int			i;

	pthread_mutex_lock(&state_lock);
	poll_done = true;
	pthread_cond_broadcast(&work_cond);
	pthread_mutex_unlock(&state_lock);
	for (i = 0; i < nthreads; i++)
		pthread_join(slots[i].thread, NULL);
	pthread_mutex_lock(&state_lock);
	heartbeat_done = true;
	pthread_cond_signal(&heartbeat_cond);
	pthread_mutex_unlock(&state_lock);
	pthread_join(heartbeat_thread, NULL);

	if (poll_conn.conn)
		PQfinish(poll_conn.conn);
	if (report_conn.conn)
		PQfinish(report_conn.conn);
	if (heartbeat_conn.conn)
		PQfinish(heartbeat_conn.conn);
}

/*
 * Start the threads, poll until a drain, wait for the running tasks, exit.
 */
int
main(int argc, char **argv)
{
	sigset_t	set;
	pthread_t	signal_thread;
	pthread_t	heartbeat_thread;
	int			status;
	int			i;

	ensure_standard_fds();
	pg_logging_init(argv[0]);
	progname = get_progname(argv[0]);
	parse_arguments(argc, argv);
	if (!PQisthreadsafe())
	{
		pg_log_error("libpq is not thread-safe");
		exit(1);
	}
	block_signals(&set);
	startup_checks();
	init_shared_state();

	start_thread(&signal_thread, signal_main, &set);
	start_thread(&heartbeat_thread, heartbeat_main, NULL);
	for (i = 0; i < nthreads; i++)
		start_thread(&slots[i].thread, worker_main, &slots[i]);
	log_info("started: worker id \"%s\", task type \"%s\"%s%s%s, %d thread(s), batch %d, wait '%s'",
			 worker_id, task_type, task_domain ? ", domain \"" : "",
			 task_domain ? task_domain : "", task_domain ? "\"" : "",
			 nthreads, batch_size, wait_text);

	status = poll_loop();

	stop_threads(heartbeat_thread);
	log_info("stopped: every claimed task was reported");
	/* the signal thread is still in sigwait(); exit ends it */
	return status;
}
