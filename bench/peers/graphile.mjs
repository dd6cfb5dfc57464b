// bench/peers/graphile.mjs: graphile-worker measured the way bench/run
// measures workflow (case 7, BENCH_PEERS=1).  bench/run installs the
// packages of package.json next to a copy of this file, in its scratch
// directory, and runs it as the PostgreSQL OS user.  The database is the
// one of the PG* environment variables (PGHOST, PGPORT, PGUSER, PGDATABASE).
//
//   node graphile.mjs version
//       graphile-worker's version
//   node graphile.mjs migrate
//       install or update the graphile_worker schema
//   node graphile.mjs drain JOBS PROCS CONC QSIZE DELAY
//       drain JOBS jobs of task "noop" already in the queue with PROCS
//       worker processes of CONC concurrent jobs each; prints
//       "seconds jobs/s node_cpu_us/job backend_cpu_us/job"
//   node graphile.mjs latency JOBS PROCS CONC QSIZE DELAY RATE
//       idle workers; one producer connection creates JOBS jobs one at a
//       time, RATE a second on average (exponential gaps, as pgbench -R);
//       prints "p50 p95 p99 max" in ms from the producer's receipt of each
//       add_job's commit acknowledgement to the start of its handler
//
// Worker settings: QSIZE is the local queue size (preset
// worker.localQueue.size; 1 or less: no local queue, each job fetched on
// its own), DELAY the batch delay in ms of completeJobBatchDelay and
// failJobBatchDelay (-1: a statement per job).  The task "noop" is an empty
// async function.
//
// The drain is timed on the server's clock, as bench/run times workflow's
// (case 2: from the first claim to the last finish): from the claim of the
// first job (its locked_at, the now() of the statement that fetched it,
// in ms) to the server's clock_timestamp() in the first poll, once every
// handler has started, that finds graphile_worker._private_jobs empty:
// graphile-worker deletes a job when it records its completion, so that is
// the commit of the last completion, late by at most one poll.  CPU per job:
// the worker processes' own (process.cpuUsage from their first job to the
// end of the drain) and that of the PostgreSQL backends of the database over
// the drain (/proc/PID/stat; BENCH_CLK_TCK clock ticks a second).
//
// The latency has one clock for both ends, process.hrtime.bigint()
// (CLOCK_MONOTONIC, one clock for all the processes of the host, in ns).

import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { EventEmitter } from "node:events";
import pg from "pg";

const now = () => process.hrtime.bigint();
const ms = (ns) => Number(ns) / 1e6;
const sleep = (t) => new Promise((resolve) => setTimeout(resolve, t));

function die(message) {
    console.error(`graphile.mjs: ${message}`);
    process.exit(1);
}

// promise's value, or die with message() after limit ms
async function within(promise, limit, message) {
    let timer;
    const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(message())), limit);
    });
    try {
        return await Promise.race([promise, timeout]);
    } catch (e) {
        die(e.message);
    } finally {
        clearTimeout(timer);
    }
}

function workerPreset(conc, qsize, delay) {
    // a connection for each concurrent job, as graphile-worker advises
    const worker = { concurrentJobs: conc, maxPoolSize: Math.max(10, conc) };
    if (qsize > 1) worker.localQueue = { size: qsize };
    worker.completeJobBatchDelay = delay;
    worker.failJobBatchDelay = delay;
    return { worker };
}

// ---------------------------------------------------------------------------
// A worker process (forked by drain or latency): runs graphile-worker when
// told "go", reports to its parent over IPC, stops when told "stop", and
// exits when its parent goes away.
// ---------------------------------------------------------------------------
async function workerProcess(mode, conc, qsize, delay) {
    const { run, Logger } = await import("graphile-worker");
    // warnings and errors only: a log line per job would be most of the work
    const logger = new Logger(() => (level, message) => {
        if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`);
    });
    process.on("disconnect", () => process.exit(1));

    let first = null;
    let cpu0 = null;
    let started = 0;
    let reportQueued = false;
    const report = () => {
        reportQueued = false;
        process.send({ started });
    };
    const tasks = {
        noop: mode === "drain"
            ? async (payload, helpers) => {
                if (first === null) {
                    first = helpers.job.locked_at;
                    cpu0 = process.cpuUsage();
                    process.send({ first: first.getTime() });
                }
                started++;
                // one message per turn of the event loop, not one per job
                if (!reportQueued) {
                    reportQueued = true;
                    setImmediate(report);
                }
            }
            : async (payload, helpers) => {
                process.send({ id: String(helpers.job.id), t: now().toString() });
            },
    };

    let runner = null;
    process.on("message", async (msg) => {
        if (msg === "go") {
            const events = new EventEmitter();
            events.once("pool:listen:success", () => process.send("listening"));
            runner = await run({
                taskList: tasks,
                noHandleSignals: true,
                logger,
                events,
                preset: workerPreset(conc, qsize, delay),
            });
            runner.promise.catch((e) => die(`worker: ${e}`));
        } else if (msg === "stop") {
            const used = cpu0 === null ? { user: 0, system: 0 } : process.cpuUsage(cpu0);
            await new Promise((resolve) => process.send({ cpu: used.user + used.system }, resolve));
            await runner.stop();
            process.exit(0);
        }
    });
    process.send("loaded");
}

// Fork PROCS worker processes and start them together once each has loaded
// graphile-worker.  onMessage(msg, i) gets the other messages of process i,
// its CPU time ({ cpu: µs }) last, when it is told to stop.
async function startWorkers(mode, procs, conc, qsize, delay, onMessage) {
    const children = [];
    const loaded = [];
    const listening = [];
    const reported = [];
    const exited = [];
    let stopping = false;
    for (let i = 0; i < procs; i++) {
        const child = fork(new URL(import.meta.url).pathname,
            ["worker", mode, String(conc), String(qsize), String(delay)]);
        let loadedResolve, listeningResolve, reportedResolve, exitedResolve;
        loaded.push(new Promise((resolve) => { loadedResolve = resolve; }));
        listening.push(new Promise((resolve) => { listeningResolve = resolve; }));
        reported.push(new Promise((resolve) => { reportedResolve = resolve; }));
        exited.push(new Promise((resolve) => { exitedResolve = resolve; }));
        child.on("message", (msg) => {
            if (msg === "loaded") loadedResolve();
            else if (msg === "listening") listeningResolve();
            else onMessage(msg, i);
            if (msg.cpu !== undefined) reportedResolve();
        });
        child.on("exit", (code, signal) => {
            if (!stopping || code !== 0) die(`worker process ${child.pid} exited (${signal || code})`);
            exitedResolve();
        });
        children.push(child);
    }
    await Promise.all(loaded);
    for (const child of children) child.send("go");
    return {
        listening: Promise.all(listening),
        async stop() {
            stopping = true;
            for (const child of children) child.send("stop");
            await within(Promise.all([...reported, ...exited]), 30000,
                () => "the worker processes did not stop within 30 s");
        },
    };
}

// CPU clock ticks used so far by the backends of this database but this
// client's: pid -> ticks
async function backendTicks(client) {
    const { rows } = await client.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
    const ticks = new Map();
    for (const { pid } of rows) {
        try {
            const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
            const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
            ticks.set(pid, Number(fields[11]) + Number(fields[12]));   // utime + stime
        } catch {
            // gone meanwhile
        }
    }
    return ticks;
}

async function drain(jobs, procs, conc, qsize, delay) {
    const clkTck = Number(process.env.BENCH_CLK_TCK || 100);
    const client = new pg.Client();
    await client.connect();
    const { rows: [{ n }] } = await client.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
    if (n !== jobs) die(`drain: ${n} jobs in the queue, ${jobs} expected`);

    let first = null;
    let ticks0 = null;
    let ticks0Pending = null;
    let cpu = 0;
    const started = [];          // jobs started by worker process i
    let total = 0;
    let allStarted;
    const allStartedP = new Promise((resolve) => { allStarted = resolve; });
    const workers = await startWorkers("drain", procs, conc, qsize, delay, (msg, i) => {
        if (msg.first !== undefined) {
            if (first === null || msg.first < first) first = msg.first;
            if (ticks0Pending === null) ticks0Pending = backendTicks(client).then((t0) => { ticks0 = t0; });
        } else if (msg.started !== undefined) {
            total += msg.started - (started[i] || 0);
            started[i] = msg.started;
            if (total >= jobs) allStarted();
        } else if (msg.cpu !== undefined) {
            cpu += msg.cpu;
        }
    });
    await within(allStartedP, 900000, () => `drain: ${total} of ${jobs} jobs started after 900 s`);
    // every handler has started: poll until the last completion is committed
    let secs = null;
    const since = new Date(first).toISOString();
    const deadline = Date.now() + 60000;
    while (secs === null) {
        const { rows } = await client.query(
            `SELECT extract(epoch FROM clock_timestamp() - $1::timestamptz)::float8 AS secs
              WHERE NOT EXISTS (SELECT FROM graphile_worker._private_jobs)`, [since]);
        if (rows.length > 0) {
            secs = rows[0].secs;
        } else if (Date.now() > deadline) {
            const { rows: [r] } = await client.query(
                "SELECT count(*) AS left, max(last_error) AS error FROM graphile_worker._private_jobs");
            die(`drain: ${r.left} jobs left 60 s after the last one started; e.g. ${r.error}`);
        }
    }
    await ticks0Pending;
    const ticks1 = await backendTicks(client);
    let ticks = 0;
    for (const [pid, t] of ticks1) ticks += t - ((ticks0 && ticks0.get(pid)) || 0);
    await workers.stop();
    await client.end();
    console.log([secs.toFixed(4), (jobs / secs).toFixed(1), (cpu / jobs).toFixed(1),
        (ticks * 1e6 / clkTck / jobs).toFixed(1)].join(" "));
}

function percentile(sorted, p) {
    // as PostgreSQL's percentile_cont: linear interpolation between ranks
    const pos = p * (sorted.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function latency(jobs, procs, conc, qsize, delay, rate) {
    const acked = new Map();     // job id -> the producer's receipt of the commit
    const startedAt = new Map(); // job id -> the handler's start
    let allStarted;
    const allStartedP = new Promise((resolve) => { allStarted = resolve; });
    const workers = await startWorkers("latency", procs, conc, qsize, delay, (msg) => {
        if (msg.id !== undefined) {
            startedAt.set(msg.id, BigInt(msg.t));
            if (startedAt.size >= jobs) allStarted();
        }
    });
    await within(workers.listening, 60000, () => "latency: workers not listening after 60 s");
    await sleep(1000);   // idle workers

    const client = new pg.Client();
    await client.connect();
    await client.query("SELECT 1");
    const meanGap = 1000 / rate;
    let next = Date.now();
    for (let i = 0; i < jobs; i++) {
        next += -Math.log(1 - Math.random()) * meanGap;
        const wait = next - Date.now();
        if (wait > 0) await sleep(wait);
        const { rows: [{ id }] } = await client.query("SELECT id FROM graphile_worker.add_job('noop')");
        acked.set(String(id), now());
    }
    await within(allStartedP, 60000, () => `latency: ${startedAt.size} of ${jobs} jobs started 60 s after the last was created`);
    await client.end();
    await workers.stop();
    const lat = [...acked].map(([id, t]) => ms(startedAt.get(id) - t)).sort((a, b) => a - b);
    console.log([0.5, 0.95, 0.99].map((p) => percentile(lat, p).toFixed(2)).join(" ") + " " +
        lat[lat.length - 1].toFixed(2));
}

const [cmd, ...args] = process.argv.slice(2);
const num = (i, name) => {
    const v = Number(args[i]);
    if (args[i] === undefined || !Number.isFinite(v)) die(`${cmd}: ${name} expected as argument ${i + 1}`);
    return v;
};
try {
    if (cmd === "version") {
        const require = createRequire(import.meta.url);
        console.log(require("graphile-worker/package.json").version);
    } else if (cmd === "migrate") {
        const { runMigrations } = await import("graphile-worker");
        await runMigrations({});
    } else if (cmd === "drain") {
        await drain(num(0, "JOBS"), num(1, "PROCS"), num(2, "CONC"), num(3, "QSIZE"), num(4, "DELAY"));
    } else if (cmd === "latency") {
        await latency(num(0, "JOBS"), num(1, "PROCS"), num(2, "CONC"), num(3, "QSIZE"), num(4, "DELAY"),
            num(5, "RATE"));
    } else if (cmd === "worker") {
        await workerProcess(args[0], Number(args[1]), Number(args[2]), Number(args[3]));
    } else {
        die("usage: graphile.mjs version | migrate | drain JOBS PROCS CONC QSIZE DELAY | latency JOBS PROCS CONC QSIZE DELAY RATE");
    }
} catch (e) {
    die(e && e.stack ? e.stack : String(e));
}
