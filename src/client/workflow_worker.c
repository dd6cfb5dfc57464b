/*-------------------------------------------------------------------------
 *
 * workflow_worker.c
 *		workflow-worker: the external task client of the workflow extension
 *		(Netflix Conductor's coordinator), a plain libpq program.
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
 * - N worker threads run the commands (posix_spawn, pipes, poll(2)) and
 *	 report the outcome with complete_task / fail_task.  They share one
 *	 reporting connection, under a mutex: reports are short statements, and
 *	 a PostgreSQL connection is a server process, so the client uses three
 *	 connections whatever N is (poll, reports, heartbeat).
 * - A heartbeat thread, on its own connection, calls extend_task for every
 *	 running task whose lease is more than half used.  It sleeps on a
 *	 condition variable until the earliest such moment.
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
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* pipe2 */
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

#define PROGNAME			"workflow-worker"
#define WORKER_VERSION		"1.0"

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
	/* the lease, on this process's monotonic clock (under state_lock) */
	double		lease_start;	/* when it (or its last extension) began */
	double		lease_end;		/* when it ends */
	double		next_extend;	/* when the heartbeat extends it next */
	bool		lease_lost;		/* extend_task said it is no longer valid */
	struct Task *next;			/* in the queue of claimed tasks */
} Task;

/* One worker thread (fields under state_lock) */
typedef struct Slot
{
	pthread_t	thread;
	Task	   *task;			/* the task it runs, or NULL */
	pid_t		pid;			/* its command (a process group), or 0 */
	bool		interrupted;	/* the command was stopped by a second signal */
} Slot;

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
	int			spawn_error;	/* errno of posix_spawnp, or 0 */
	int			status;			/* wait status */
	bool		interrupted;	/* stopped by a second SIGTERM/SIGINT */
	char	   *out;			/* stdout */
	size_t		out_len;
	bool		out_too_big;
	char		err[STDERR_TAIL + 1];	/* tail of stderr */
	size_t		err_len;
	bool		err_truncated;
	double		duration;		/* seconds */
} CommandResult;

/* Settings */
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

static int	wake_pipe[2];		/* wakes the poller */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static Conn poll_conn = {"poll", NULL, false, PTHREAD_MUTEX_INITIALIZER};
static Conn report_conn = {"report", NULL, false, PTHREAD_MUTEX_INITIALIZER};
static Conn heartbeat_conn = {"heartbeat", NULL, false, PTHREAD_MUTEX_INITIALIZER};

static void log_msg(const char *fmt,...) __attribute__((format(printf, 1, 2)));


/*
 * Seconds on the monotonic clock.
 */
static double
mono_now(void)
{
	struct timespec ts;

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
 * malloc that exits when memory runs out.
 */
static void *
xmalloc(size_t size)
{
	void	   *p = malloc(size ? size : 1);

	if (p == NULL)
	{
		fprintf(stderr, "%s: out of memory\n", PROGNAME);
		exit(1);
	}
	return p;
}

/*
 * strdup that exits when memory runs out.
 */
static char *
xstrdup(const char *s)
{
	size_t		len = strlen(s);
	char	   *p = xmalloc(len + 1);

	memcpy(p, s, len + 1);
	return p;
}

/*
 * Write one line to stderr: local time with milliseconds, time zone, pid,
 * then the message.  One write(2) per line, so that lines of several
 * threads never mix.
 */
static void
log_msg(const char *fmt,...)
{
	char		line[2048];
	char		stamp[64];
	struct timespec ts;
	struct tm	tm;
	size_t		len;
	int			n;
	va_list		ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03d ", stamp, (int) (ts.tv_nsec / 1000000));
	len = n;
	len += strftime(line + len, sizeof(line) - len, "%Z", &tm);
	n = snprintf(line + len, sizeof(line) - len, " [%d] ", (int) getpid());
	len += n;
	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	va_end(ap);
	len = (n < 0 || len + n >= sizeof(line) - 1) ? sizeof(line) - 2 : len + n;
	line[len++] = '\n';

	pthread_mutex_lock(&log_lock);
	{
		const char *p = line;

		while (len > 0)
		{
			ssize_t		w = write(STDERR_FILENO, p, len);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			p += w;
			len -= w;
		}
	}
	pthread_mutex_unlock(&log_lock);
}

/*
 * Make text safe to send as a PostgreSQL text value: invalid UTF-8 bytes
 * become '?' and NUL bytes spaces.  Works in place.
 */
static void
sanitize_utf8(char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = (unsigned char) s[i];
		size_t		n;
		size_t		k;
		bool		ok = true;

		if (c == 0)
		{
			s[i++] = ' ';
			continue;
		}
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 2;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 3;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 4;
		else
			n = 0;
		if (n == 0 || i + n > len)
			ok = false;
		for (k = 1; ok && k < n; k++)
			if (((unsigned char) s[i + k] & 0xC0) != 0x80)
				ok = false;
		/* overlong forms, surrogates and code points past U+10FFFF */
		if (ok && n == 3 && c == 0xE0 && (unsigned char) s[i + 1] < 0xA0)
			ok = false;
		if (ok && n == 3 && c == 0xED && (unsigned char) s[i + 1] >= 0xA0)
			ok = false;
		if (ok && n == 4 && c == 0xF0 && (unsigned char) s[i + 1] < 0x90)
			ok = false;
		if (ok && n == 4 && c == 0xF4 && (unsigned char) s[i + 1] >= 0x90)
			ok = false;
		if (!ok)
		{
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

/*
 * Quote a message for a log line: one line, at most LOG_ERROR_CHARS
 * characters, with quotes, backslashes and control characters escaped.
 */
static void
quote_for_log(const char *msg, char *buf, size_t buflen)
{
	size_t		o = 0;
	size_t		i;

	buf[o++] = '"';
	for (i = 0; msg[i] != '\0' && o + 6 < buflen; i++)
	{
		unsigned char c = (unsigned char) msg[i];

		if (i >= LOG_ERROR_CHARS)
		{
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '"' || c == '\\')
		{
			buf[o++] = '\\';
			buf[o++] = c;
		}
		else if (c == '\n')
		{
			buf[o++] = '\\';
			buf[o++] = 'n';
		}
		else if (c < 0x20 || c == 0x7f)
			buf[o++] = ' ';
		else
			buf[o++] = c;
	}
	buf[o++] = '"';
	buf[o] = '\0';
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
	const char *values[] = {conninfo, "UTF8", PROGNAME, NULL};

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
			log_msg("%s connection: reconnected", c->name);
		c->lost = false;
		return true;
	}
	connection_error(c->conn, msg, sizeof(msg));
	if (!c->lost)
		log_msg("%s connection: cannot connect: %s", c->name, msg);
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
		log_msg("%s connection: lost: %s; reconnecting", c->name, msg);
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
 * The command's environment: ours plus WORKFLOW_* variables naming the task.
 */
static char **
command_environment(const Task *t)
{
	extern char **environ;
	size_t		n = 0;
	size_t		i;
	char	  **envp;
	char		buf[512];
	int			k = 0;

	while (environ[n] != NULL)
		n++;
	envp = xmalloc((n + 7) * sizeof(char *));
	for (i = 0; i < n; i++)
	{
		if (strncmp(environ[i], "WORKFLOW_", 9) == 0)
			continue;
		envp[k++] = environ[i];
	}
	snprintf(buf, sizeof(buf), "WORKFLOW_JOB_ID=%lld", t->job_id);
	envp[k++] = xstrdup(buf);
	snprintf(buf, sizeof(buf), "WORKFLOW_TASK=%s", t->name);
	envp[k++] = xstrdup(buf);
	snprintf(buf, sizeof(buf), "WORKFLOW_TASK_TYPE=%s", task_type);
	envp[k++] = xstrdup(buf);
	snprintf(buf, sizeof(buf), "WORKFLOW_ATTEMPT=%d", t->attempt);
	envp[k++] = xstrdup(buf);
	snprintf(buf, sizeof(buf), "WORKFLOW_LEASE=%lld", t->lease);
	envp[k++] = xstrdup(buf);
	snprintf(buf, sizeof(buf), "WORKFLOW_WORKER_ID=%s", worker_id);
	envp[k++] = xstrdup(buf);
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
		free(envp[i]);
	free(envp);
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
 * Append to the command's stdout, up to MAX_OUTPUT bytes.
 */
static void
keep_stdout(CommandResult *r, size_t *cap, const char *data, size_t len)
{
	if (r->out_too_big)
		return;
	if (r->out_len + len > MAX_OUTPUT)
	{
		r->out_too_big = true;
		return;
	}
	if (r->out_len + len + 1 > *cap)
	{
		char	   *bigger;

		while (r->out_len + len + 1 > *cap)
			*cap *= 2;
		bigger = realloc(r->out, *cap);
		if (bigger == NULL)
		{
			r->out_too_big = true;
			return;
		}
		r->out = bigger;
	}
	memcpy(r->out + r->out_len, data, len);
	r->out_len += len;
	r->out[r->out_len] = '\0';
}

/*
 * Run COMMAND for a task: its input on stdin (then closed), stdout kept
 * whole, the tail of stderr kept.  The command runs in a process group of
 * its own (a terminal's ^C reaches only us, and we drain), with default
 * signal handling and an empty signal mask.  The command ends when both
 * its output pipes are closed; if it exits while a background process of
 * its own keeps them open, we stop reading a second later.
 */
static void
run_command(Slot *slot, const Task *t, CommandResult *r)
{
	int			in[2];
	int			out[2];
	int			err[2];
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	sigset_t	none;
	sigset_t	defaults;
	char	  **envp;
	pid_t		pid;
	int			rc;
	size_t		written = 0;
	size_t		cap = 8192;
	bool		reaped = false;
	double		start = mono_now();
	double		reaped_at = 0;
	double		checked_at = start;
	char		buf[65536];

	memset(r, 0, sizeof(*r));
	r->out = xmalloc(cap);
	r->out[0] = '\0';

	if (pipe2(in, O_CLOEXEC) != 0)
	{
		r->spawn_error = errno;
		return;
	}
	if (pipe2(out, O_CLOEXEC) != 0)
	{
		r->spawn_error = errno;
		close(in[0]);
		close(in[1]);
		return;
	}
	if (pipe2(err, O_CLOEXEC) != 0)
	{
		r->spawn_error = errno;
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return;
	}

	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	sigaddset(&defaults, SIGUSR1);
	sigaddset(&defaults, SIGUSR2);
	sigaddset(&defaults, SIGTERM);
	sigaddset(&defaults, SIGINT);
	sigaddset(&defaults, SIGHUP);
	sigaddset(&defaults, SIGQUIT);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
							 POSIX_SPAWN_SETPGROUP);
	envp = command_environment(t);

	rc = posix_spawnp(&pid, command[0], &actions, &attr, command, envp);

	free_environment(envp);
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attr);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	if (rc != 0)
	{
		r->spawn_error = rc;
		close(in[1]);
		close(out[0]);
		close(err[0]);
		return;
	}

	pthread_mutex_lock(&state_lock);
	slot->pid = pid;
	if (stopping)
	{
		slot->interrupted = true;
		kill(-pid, SIGTERM);
	}
	pthread_mutex_unlock(&state_lock);

	set_nonblocking(in[1]);
	set_nonblocking(out[0]);
	set_nonblocking(err[0]);
	{
		int			in_fd = in[1];
		int			out_fd = out[0];
		int			err_fd = err[0];

		if (t->input_len == 0)
		{
			close(in_fd);
			in_fd = -1;
		}
		while (out_fd >= 0 || err_fd >= 0)
		{
			struct pollfd pfd[3];
			int			n = 0;
			int			i;
			double		now;

			if (in_fd >= 0)
				pfd[n++] = (struct pollfd) {in_fd, POLLOUT, 0};
			if (out_fd >= 0)
				pfd[n++] = (struct pollfd) {out_fd, POLLIN, 0};
			if (err_fd >= 0)
				pfd[n++] = (struct pollfd) {err_fd, POLLIN, 0};
			rc = poll(pfd, n, 1000);
			if (rc < 0 && errno != EINTR)
				break;
			for (i = 0; rc > 0 && i < n; i++)
			{
				if (pfd[i].revents == 0)
					continue;
				if (pfd[i].fd == in_fd)
				{
					ssize_t		w = write(in_fd, t->input + written, t->input_len - written);

					if (w > 0)
						written += w;
					/* EPIPE: the command does not read its input, fine */
					if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
						written == t->input_len)
					{
						close(in_fd);
						in_fd = -1;
					}
				}
				else
				{
					ssize_t		got = read(pfd[i].fd, buf, sizeof(buf));

					if (got > 0)
					{
						if (pfd[i].fd == out_fd)
							keep_stdout(r, &cap, buf, got);
						else
							keep_stderr_tail(r, buf, got);
					}
					else if (got == 0 || (errno != EAGAIN && errno != EINTR))
					{
						close(pfd[i].fd);
						if (pfd[i].fd == out_fd)
							out_fd = -1;
						else
							err_fd = -1;
					}
				}
			}
			now = mono_now();
			if (!reaped && now - checked_at >= 1.0)
			{
				checked_at = now;
				if (waitpid(pid, &r->status, WNOHANG) == pid)
				{
					reaped = true;
					reaped_at = now;
				}
			}
			/* exited, but something it started holds the pipes open */
			if (reaped && now - reaped_at >= 1.0)
				break;
		}
		if (in_fd >= 0)
			close(in_fd);
		if (out_fd >= 0)
			close(out_fd);
		if (err_fd >= 0)
			close(err_fd);
	}
	if (!reaped)
	{
		while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
			;
	}
	r->duration = mono_now() - start;

	pthread_mutex_lock(&state_lock);
	slot->pid = 0;
	r->interrupted = slot->interrupted;
	pthread_mutex_unlock(&state_lock);
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
	char		quoted[LOG_ERROR_CHARS * 2 + 16];

	if (error != NULL && error[0] != '\0')
	{
		quote_for_log(error, quoted, sizeof(quoted));
		log_msg("job=%lld task=%s attempt=%d outcome=%s duration=%.3fs error=%s",
				t->job_id, t->name, t->attempt, outcome, duration, quoted);
	}
	else
		log_msg("job=%lld task=%s attempt=%d outcome=%s duration=%.3fs",
				t->job_id, t->name, t->attempt, outcome, duration);
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
 * Report a task through the reporting connection, with retries, and log
 * the task's line.  kind: 'c' complete (value = output or NULL), 'f' fail
 * (value = error), 'r' requeue.  Returns CALL_REJECTED only when
 * log_rejection is false and the server refused the value itself (SQLSTATE
 * class 22 or 54000: not JSON, too large); the caller then fails the task
 * with the server's message, left in errbuf, and nothing is logged.
 */
static CallStatus
report(const Task *t, char kind, const char *value, const char *outcome,
	   double duration, char *errbuf, size_t errlen, bool log_rejection)
{
	char		job[32];
	char		lease[32];
	const char *values[3];
	const char *sql;
	int			nparams = 2;
	PGresult   *res;
	char		sqlstate[6];
	CallStatus	st;

	snprintf(job, sizeof(job), "%lld", t->job_id);
	snprintf(lease, sizeof(lease), "%lld", t->lease);
	values[0] = job;
	values[1] = lease;
	values[2] = value;
	if (kind == 'c')
	{
		sql = COMPLETE_SQL;
		nparams = 3;
	}
	else if (kind == 'f')
	{
		sql = FAIL_SQL;
		nparams = 3;
	}
	else
		sql = REQUEUE_SQL;

	st = call_with_retry(&report_conn, sql, nparams, values, REPORT_RETRY_SECS,
						 &res, errbuf, errlen, sqlstate);
	switch (st)
	{
		case CALL_OK:
			PQclear(res);
			log_task(t, outcome, duration, kind == 'f' ? value : NULL);
			break;
		case CALL_STALE:
			{
				char		msg[1200];

				snprintf(msg, sizeof(msg), "result dropped: %s", errbuf);
				log_task(t, "stale-lease", duration, msg);
			}
			break;
		case CALL_REJECTED:
			/* an output the server refuses: the caller fails the task */
			if (!log_rejection && (strncmp(sqlstate, "22", 2) == 0 ||
								   strcmp(sqlstate, "54000") == 0))
				break;
			{
				char		msg[1200];

				snprintf(msg, sizeof(msg), "report refused (SQLSTATE %s): %s", sqlstate, errbuf);
				log_task(t, "report-refused", duration, msg);
			}
			return CALL_FAILED;
		case CALL_FAILED:
			{
				char		msg[1200];

				snprintf(msg, sizeof(msg), "report given up after %.0f s: %s",
						 REPORT_RETRY_SECS, errbuf);
				log_task(t, "report-lost", duration, msg);
			}
			break;
	}
	return st;
}

/*
 * Run one task and report its outcome.
 */
static void
run_task(Slot *slot, Task *t, bool skip)
{
	CommandResult r;
	char		errbuf[1024];
	char		msg[STDERR_TAIL + 256];

	if (skip)
	{
		/* a second signal came before the task started: hand it back */
		report(t, 'r', NULL, "requeued", 0, errbuf, sizeof(errbuf), true);
		return;
	}

	run_command(slot, t, &r);

	if (r.spawn_error != 0)
	{
		snprintf(msg, sizeof(msg), "could not run command \"%s\": %s",
				 command[0], strerror(r.spawn_error));
		sanitize_utf8(msg, strlen(msg));
		report(t, 'f', msg, "failed", r.duration, errbuf, sizeof(errbuf), true);
	}
	else if (r.interrupted)
	{
		/* stopped by a second SIGTERM/SIGINT: not the task's fault */
		report(t, 'r', NULL, "requeued", r.duration, errbuf, sizeof(errbuf), true);
	}
	else if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
	{
		const char *reason = NULL;

		if (r.out_too_big)
			reason = "the command's output is larger than 64 MB";
		else if (memchr(r.out, '\0', r.out_len) != NULL)
			reason = "the command's output is not valid JSON: it contains a NUL byte";

		if (reason != NULL)
			report(t, 'f', reason, "failed", r.duration, errbuf, sizeof(errbuf), true);
		else if (report(t, 'c', is_blank(r.out, r.out_len) ? NULL : r.out, "succeeded",
						r.duration, errbuf, sizeof(errbuf), false) == CALL_REJECTED)
		{
			/* the server refused the output (not JSON, too large, ...) */
			snprintf(msg, sizeof(msg), "the command's output is not valid JSON or was refused: %s",
					 errbuf);
			sanitize_utf8(msg, strlen(msg));
			report(t, 'f', msg, "failed", r.duration, errbuf, sizeof(errbuf), true);
		}
	}
	else
	{
		char		status[64];

		if (WIFSIGNALED(r.status))
			snprintf(status, sizeof(status), "killed by signal %d", WTERMSIG(r.status));
		else
			snprintf(status, sizeof(status), "exit status %d", WEXITSTATUS(r.status));
		r.err[r.err_len] = '\0';
		sanitize_utf8(r.err, r.err_len);
		trim_trailing_space(r.err);
		if (r.err[0] == '\0')
			snprintf(msg, sizeof(msg), "%s", status);
		else
			snprintf(msg, sizeof(msg), "%s%s", r.err_truncated ? "..." : "", r.err);
		report(t, 'f', msg, "failed", r.duration, errbuf, sizeof(errbuf), true);
	}
	free(r.out);
}

/*
 * Free a task.
 */
static void
free_task(Task *t)
{
	free(t->name);
	free(t->input);
	free(t);
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
		slot->interrupted = false;
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

	snprintf(job, sizeof(job), "%lld", job_id);
	snprintf(lease_text, sizeof(lease_text), "%lld", lease);
	values[0] = job;
	values[1] = lease_text;
	st = call_with_retry(&heartbeat_conn, EXTEND_SQL, 2, values, 0, &res,
						 errbuf, sizeof(errbuf), sqlstate);
	now = mono_now();

	pthread_mutex_lock(&state_lock);
	/* t is valid only while a slot still runs it */
	{
		int			i;
		bool		found = false;

		for (i = 0; i < nthreads; i++)
			if (slots[i].task == t && t->job_id == job_id && t->lease == lease)
				found = true;
		if (!found)
		{
			pthread_mutex_unlock(&state_lock);
			if (st == CALL_OK)
				PQclear(res);
			return;
		}
	}
	if (st == CALL_OK)
	{
		double		expires = strtod(PQgetvalue(res, 0, 0), NULL);
		double		server_now = strtod(PQgetvalue(res, 0, 1), NULL);

		t->lease_start = now;
		t->lease_end = now + (expires - server_now);
		t->next_extend = t->lease_start + (t->lease_end - t->lease_start) / 2;
		clock_offset = server_now - real_now();
		pthread_mutex_unlock(&state_lock);
		PQclear(res);
		return;
	}
	if (st == CALL_STALE)
	{
		/* logged under the lock: the worker frees t once it is released */
		t->lease_lost = true;
		log_msg("job=%lld task=%s attempt=%d lease %lld lost (its result will be dropped): %s",
				job_id, t->name, t->attempt, lease, errbuf);
		pthread_mutex_unlock(&state_lock);
		return;
	}
	/* try again soon, well before the lease ends */
	{
		double		left = t->lease_end - now;
		double		again = left / 4;

		if (again > 1.0)
			again = 1.0;
		if (again < 0.1)
			again = 0.1;
		t->next_extend = now + again;
	}
	if (st == CALL_REJECTED)
		log_msg("job=%lld task=%s attempt=%d could not extend lease %lld (SQLSTATE %s): %s",
				job_id, t->name, t->attempt, lease, sqlstate, errbuf);
	pthread_mutex_unlock(&state_lock);
}

/*
 * The heartbeat thread: sleep until the earliest moment a running task's
 * lease is half used, then extend it.
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

			if (t == NULL || t->lease_lost)
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
					log_msg("SIGUSR1: pausing polling");
				paused = true;
				break;
			case SIGUSR2:
				if (paused && !draining)
					log_msg("SIGUSR2: resuming polling");
				paused = false;
				break;
			default:
				if (!draining)
				{
					draining = true;
					log_msg("%s: draining: no more polling, finishing %d running task(s)",
							sig == SIGTERM ? "SIGTERM" : "SIGINT", busy);
				}
				else if (!stopping)
				{
					stopping = true;
					log_msg("%s again: stopping the running commands and handing their tasks back",
							sig == SIGTERM ? "SIGTERM" : "SIGINT");
					for (i = 0; i < nthreads; i++)
						if (slots[i].pid > 0)
						{
							slots[i].interrupted = true;
							kill(-slots[i].pid, SIGTERM);
						}
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
 * Read a big-endian integer of n bytes.
 */
static long long
get_be(const char *p, int n)
{
	unsigned long long v = 0;
	int			i;

	for (i = 0; i < n; i++)
		v = (v << 8) | (unsigned char) p[i];
	if (n == 4)
		return (long long) (int32_t) (uint32_t) v;
	return (long long) v;
}

/*
 * Turn the rows of a poll (binary format) into tasks on the queue.
 * Returns the number of tasks, or -1 when the rows are not as expected.
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

	if (PQnfields(res) != 6 || PQbinaryTuples(res) != 1)
		return -1;
	for (i = 0; i < n; i++)
	{
		int			f;

		for (f = 0; f < 6; f++)
			if (PQgetisnull(res, i, f) && f != 5)
				return -1;
		if (PQgetlength(res, i, 0) != 8 || PQgetlength(res, i, 2) != 4 ||
			PQgetlength(res, i, 3) != 8 || PQgetlength(res, i, 4) != 8)
			return -1;
		if (!PQgetisnull(res, i, 5) &&
			(PQgetlength(res, i, 5) < 1 || PQgetvalue(res, i, 5)[0] != 1))
			return -1;			/* jsonb's binary format version 1 */
	}

	pthread_mutex_lock(&state_lock);
	offset = clock_offset;
	pthread_mutex_unlock(&state_lock);

	for (i = 0; i < n; i++)
	{
		Task	   *t = xmalloc(sizeof(Task));
		double		expires;

		memset(t, 0, sizeof(*t));
		t->job_id = get_be(PQgetvalue(res, i, 0), 8);
		t->name = xstrdup(PQgetvalue(res, i, 1));
		t->attempt = (int) get_be(PQgetvalue(res, i, 2), 4);
		t->lease = get_be(PQgetvalue(res, i, 3), 8);
		/* timestamptz: microseconds since 2000-01-01 UTC */
		expires = get_be(PQgetvalue(res, i, 4), 8) / 1e6 + PG_EPOCH_OFFSET;
		if (PQgetisnull(res, i, 5))
		{
			t->input = xstrdup("null\n");
			t->input_len = 5;
		}
		else
		{
			size_t		len = PQgetlength(res, i, 5) - 1;

			t->input = xmalloc(len + 2);
			memcpy(t->input, PQgetvalue(res, i, 5) + 1, len);
			t->input[len] = '\n';
			t->input[len + 1] = '\0';
			t->input_len = len + 1;
		}
		t->lease_start = now;
		t->lease_end = now + (expires - (real + offset));
		if (t->lease_end < now)
			t->lease_end = now;
		t->next_extend = t->lease_start + (t->lease_end - t->lease_start) / 2;
		if (last)
			last->next = t;
		else
			first = t;
		last = t;
	}
	if (n > 0)
	{
		pthread_mutex_lock(&state_lock);
		if (queue_tail)
			queue_tail->next = first;
		else
			queue_head = first;
		queue_tail = last;
		busy += n;
		pthread_cond_broadcast(&work_cond);
		pthread_mutex_unlock(&state_lock);
	}
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
			PGcancel   *cancel = PQgetCancel(c->conn);
			char		errbuf[256];

			if (cancel != NULL)
			{
				(void) PQcancel(cancel, errbuf, sizeof(errbuf));
				PQfreeCancel(cancel);
			}
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

/*
 * The poll loop: claim tasks for the free worker threads until a drain
 * starts.  Returns the exit status.
 */
static int
poll_loop(void)
{
	Conn	   *c = &poll_conn;
	double		backoff = BACKOFF_MIN;
	bool		said_paused = false;
	char		errbuf[1024];

	for (;;)
	{
		int			free_threads;
		int			count;
		bool		is_paused;
		PGresult   *res;

		pthread_mutex_lock(&state_lock);
		if (draining)
		{
			pthread_mutex_unlock(&state_lock);
			break;
		}
		is_paused = paused;
		free_threads = nthreads - busy;
		pthread_mutex_unlock(&state_lock);

		if (is_paused)
		{
			if (!said_paused)
				log_msg("polling paused");
			said_paused = true;
			wait_for_wakeup(-1);
			continue;
		}
		if (said_paused)
			log_msg("polling resumed");
		said_paused = false;
		if (free_threads <= 0)
		{
			wait_for_wakeup(-1);
			continue;
		}

		if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK)
		{
			if (!poll_reconnect(c))
			{
				if (poll_unwanted())
					continue;
				connection_error(c->conn, errbuf, sizeof(errbuf));
				log_msg("poll connection: cannot connect: %s; retrying in %.1f s",
						errbuf, backoff);
				c->lost = true;
				wait_for_wakeup((int) (backoff * 1000));
				backoff = next_backoff(backoff);
				continue;
			}
			if (c->lost)
				log_msg("poll connection: reconnected");
			c->lost = false;
		}

		count = free_threads < batch_size ? free_threads : batch_size;
		res = poll_once(c, count);
		if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			int			n = queue_tasks(res);

			PQclear(res);
			if (n < 0)
			{
				log_msg("poll: unexpected result from workflow.poll_tasks(); is the extension's version right?");
				return 1;
			}
			backoff = BACKOFF_MIN;
			if (n == 0 && wait_secs == 0)
				wait_for_wakeup((int) (IDLE_POLL_SECS * 1000));
			continue;
		}

		{
			ErrorKind	kind = classify_error(c->conn, res);
			const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

			result_error(c->conn, res, errbuf, sizeof(errbuf));
			PQclear(res);
			/* our own cancel (pause, drain) */
			if (state != NULL && strcmp(state, "57014") == 0 && poll_unwanted())
				continue;
			if (state != NULL && strncmp(state, "22", 2) == 0)
			{
				/* bad task type, domain, worker id or wait: nothing will change */
				log_msg("poll: %s (SQLSTATE %s); stopping", errbuf, state);
				pthread_mutex_lock(&state_lock);
				draining = true;
				pthread_mutex_unlock(&state_lock);
				return 2;
			}
			if (kind == ERR_CONNECTION)
			{
				if (!c->lost)
					log_msg("poll connection: lost: %s; reconnecting", errbuf);
				c->lost = true;
				/* reconnect at once the first time, with backoff afterwards */
				if (PQstatus(c->conn) == CONNECTION_OK)
				{
					PQfinish(c->conn);
					c->conn = NULL;
				}
				else if (backoff > BACKOFF_MIN)
					wait_for_wakeup((int) (backoff * 1000));
				backoff = next_backoff(backoff);
				continue;
			}
			log_msg("poll: %s%s%s%s; retrying in %.1f s", errbuf,
					state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "",
					backoff);
			wait_for_wakeup((int) (backoff * 1000));
			backoff = next_backoff(backoff);
		}
	}
	return 0;
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
		   PROGNAME);
	printf("Usage:\n"
		   "  %s -d CONNINFO -t TASK_TYPE [OPTION]... -- COMMAND [ARG]...\n\n", PROGNAME);
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
		   "are extended while the command runs.\n\n");
	printf("Signals: SIGUSR1 pauses polling, SIGUSR2 resumes it.  SIGTERM or SIGINT drains:\n"
		   "no more polling, the running tasks are finished and reported, then exit 0;\n"
		   "a second one stops the running commands and hands their tasks back.\n\n");
	printf("Exit status: 0 after a drain, 2 for bad usage or when the database cannot be\n"
		   "reached at start, 1 for other errors.\n");
}

/*
 * Complain about the command line and exit with status 2.
 */
static void
bad_usage(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * (see the prototype above)
 */
static void
bad_usage(const char *fmt,...)
{
	va_list		ap;

	if (fmt != NULL)
	{
		fprintf(stderr, "%s: ", PROGNAME);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fprintf(stderr, "Try \"%s --help\" for more information.\n", PROGNAME);
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
 * Parse the command line into the settings, or exit (0 for --help and
 * --version, 2 for mistakes).
 */
static void
parse_arguments(int argc, char **argv)
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
	char	   *err = NULL;
	PQconninfoOption *opts;

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
				printf("%s (workflow) %s\n", PROGNAME, WORKER_VERSION);
				exit(0);
			default:
				/* getopt_long printed the complaint */
				bad_usage(NULL);
		}
	}
	if (conninfo == NULL)
		bad_usage("no database given: use -d CONNINFO");
	if (task_type == NULL)
		bad_usage("no task type given: use -t TASK_TYPE");
	if (optind >= argc)
		bad_usage("no command given: put it after \"--\"");
	command = argv + optind;
	if (command[0][0] == '\0')
		bad_usage("the command is empty");

	if (!valid_name(task_type))
		bad_usage("invalid task type \"%s\": 1 to 128 letters, digits, \"_\", \"-\" or \".\" are expected",
				  task_type);
	if (task_domain != NULL && !valid_name(task_domain))
		bad_usage("invalid domain \"%s\": 1 to 128 letters, digits, \"_\", \"-\" or \".\" are expected",
				  task_domain);
	if (batch_size == 0)
		batch_size = nthreads;
	if (worker_id == NULL)
	{
		char		host[256];
		char		buf[300];

		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		snprintf(buf, sizeof(buf), "%s:%d", host, (int) getpid());
		worker_id = xstrdup(buf);
	}
	else
	{
		size_t		i;
		size_t		len = strlen(worker_id);

		if (len < 1 || len > 200)
			bad_usage("invalid worker id: 1 to 200 printable characters are expected");
		for (i = 0; i < len; i++)
			if ((unsigned char) worker_id[i] < 0x20 || worker_id[i] == 0x7f)
				bad_usage("invalid worker id: 1 to 200 printable characters are expected");
	}

	/* as libpq: a string without "=" and not a URI is a database name */
	if (strchr(conninfo, '=') == NULL && strncmp(conninfo, "postgresql://", 13) != 0 &&
		strncmp(conninfo, "postgres://", 11) != 0)
		return;
	opts = PQconninfoParse(conninfo, &err);
	if (opts == NULL)
	{
		if (err != NULL)
		{
			trim_trailing_space(err);
			fprintf(stderr, "%s: invalid connection string \"%s\": %s\n", PROGNAME, conninfo, err);
			PQfreemem(err);
		}
		else
			fprintf(stderr, "%s: out of memory\n", PROGNAME);
		exit(2);
	}
	PQconninfoFree(opts);
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

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		char		msg[1024];

		connection_error(conn, msg, sizeof(msg));
		fprintf(stderr, "%s: could not connect to the database: %s\n", PROGNAME, msg);
		exit(2);
	}
	before = real_now();
	res = PQexecParams(conn, STARTUP_SQL, 1, NULL, values, NULL, NULL, 0);
	after = real_now();
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		char		msg[1024];
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		result_error(conn, res, msg, sizeof(msg));
		if (state != NULL && strncmp(state, "22", 2) == 0)
			fprintf(stderr, "%s: invalid value \"%s\" for --wait: %s\n", PROGNAME, wait_text, msg);
		else
			fprintf(stderr, "%s: could not query the database: %s\n", PROGNAME, msg);
		exit(2);
	}
	clock_offset = strtod(PQgetvalue(res, 0, 0), NULL) - (before + after) / 2;
	wait_secs = strtod(PQgetvalue(res, 0, 1), NULL);
	if (wait_secs < 0 || wait_secs > MAX_WAIT_SECS)
	{
		fprintf(stderr, "%s: invalid value \"%s\" for --wait: from 0 to 5 minutes is expected\n",
				PROGNAME, wait_text);
		exit(2);
	}
	if (strcmp(PQgetvalue(res, 0, 2), "t") != 0)
		log_msg("warning: the workflow extension is not installed in this database; polls fail until it is");
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
 * Start the threads, poll until a drain, wait for the running tasks, exit.
 */
int
main(int argc, char **argv)
{
	sigset_t	set;
	struct sigaction sa;
	pthread_t	signal_thread;
	pthread_t	heartbeat_thread;
	pthread_condattr_t cattr;
	int			status;
	int			i;

	ensure_standard_fds();
	parse_arguments(argc, argv);
	if (!PQisthreadsafe())
	{
		fprintf(stderr, "%s: libpq is not thread-safe\n", PROGNAME);
		exit(1);
	}

	/* writes to a command that stopped reading fail with EPIPE instead */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* every thread blocks these; the signal thread takes them */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	startup_checks();

	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
	{
		fprintf(stderr, "%s: could not create a pipe: %s\n", PROGNAME, strerror(errno));
		exit(1);
	}
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&heartbeat_cond, &cattr);
	pthread_condattr_destroy(&cattr);

	slots = xmalloc(nthreads * sizeof(Slot));
	memset(slots, 0, nthreads * sizeof(Slot));
	if (pthread_create(&signal_thread, NULL, signal_main, &set) != 0 ||
		pthread_create(&heartbeat_thread, NULL, heartbeat_main, NULL) != 0)
	{
		fprintf(stderr, "%s: could not start a thread\n", PROGNAME);
		exit(1);
	}
	for (i = 0; i < nthreads; i++)
		if (pthread_create(&slots[i].thread, NULL, worker_main, &slots[i]) != 0)
		{
			fprintf(stderr, "%s: could not start a thread\n", PROGNAME);
			exit(1);
		}

	log_msg("started: worker id \"%s\", task type \"%s\"%s%s%s, %d thread(s), batch %d, wait '%s'",
			worker_id, task_type, task_domain ? ", domain \"" : "",
			task_domain ? task_domain : "", task_domain ? "\"" : "",
			nthreads, batch_size, wait_text);

	status = poll_loop();

	/* drain: let the workers finish what was claimed, then stop */
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
	log_msg("stopped: every claimed task was reported");
	/* the signal thread is still in sigwait(); exit ends it */
	return status;
}
