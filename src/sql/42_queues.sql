-- Queues: limits on how many jobs of a queue run at once, how fast they
-- start, and how many run per concurrency key
-------------------------------------------------------------------------------
--
-- Every job belongs to a queue: its workflow's ("queue" in the definition)
-- or the one create_job names; "default" otherwise.  A queue of
-- workflow.queues may have limits, all enforced by the claims (in-server
-- runners, poll_tasks, run_job), in-server runners and external workers
-- together:
--
--   concurrency      at most this many jobs of the queue running at once
--                    (claimed and not ended: a waiting job holds no slot);
--   rate_limit       at most this many claims per rate_interval: a token
--                    bucket that holds rate_limit tokens at most and refills
--                    continuously, so an idle queue may start rate_limit
--                    jobs at once and then rate_limit per rate_interval;
--   key_concurrency  at most this many running jobs per value of the job's
--                    concurrency key (the definition's concurrency_key,
--                    computed at job creation).
--
-- A claim locks the row of each limited queue it takes from (SKIP LOCKED:
-- a queue whose row another claim holds is left to that claim this time),
-- counts the queue's running jobs, refills the bucket, and claims no more
-- than that allows; the lock is held to the claim's commit, so two claims
-- never both see the same free slot.  The claim scans each open queue in
-- claim order (index jobs_runnable_* lead with the queue) and merges, so a
-- queue held back by its limits never holds back another.

-- Whether a queue exists: "default" always does, others have a row.
CREATE OR REPLACE FUNCTION workflow._queue_exists(name text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT _queue_exists.name = 'default'
        OR EXISTS (SELECT 1 FROM workflow.queues q WHERE q.name = _queue_exists.name)
$$;
COMMENT ON FUNCTION workflow._queue_exists(text) IS
    'internal: whether a queue exists ("default" always does)';

-- Jobs and definitions that name a queue hold this lock in share mode
-- until they commit; drop_queue takes it exclusively, so that it never
-- drops a queue a transaction is putting a job in.
CREATE OR REPLACE FUNCTION workflow._lock_queue(name text, exclusive boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF exclusive THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('workflow.queue'), pg_catalog.hashtext(name));
    ELSE
        PERFORM pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtext('workflow.queue'), pg_catalog.hashtext(name));
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._lock_queue(text, boolean) IS
    'internal: serialise drop_queue with the transactions that put jobs or workflows in a queue';

-- A queue a new job (or a retried one) goes to: it must exist, and is
-- kept from being dropped until this transaction ends.  Returns it.
CREATE OR REPLACE FUNCTION workflow._job_queue(queue text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF queue = 'default' THEN
        RETURN queue;
    END IF;
    PERFORM workflow._lock_queue(queue, false);
    IF NOT workflow._queue_exists(queue) THEN
        RAISE EXCEPTION 'queue "%" does not exist', left(queue, 200)
            USING ERRCODE = 'undefined_object',
                  HINT = 'An administrator creates queues with workflow.create_queue().';
    END IF;
    RETURN queue;
END
$$;
COMMENT ON FUNCTION workflow._job_queue(text) IS
    'internal: check that the queue of a new job exists, and keep it from drop_queue until the transaction ends';

-- The server log's line of a queue created or altered, with its limits.
CREATE OR REPLACE FUNCTION workflow._log_queue(q workflow.queues, what text, p_caller oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE LOG 'workflow: queue "%" % by role "%" (concurrency %, rate_limit % per %, key_concurrency %)',
              q.name, what, p_caller::regrole, coalesce(q.concurrency::text, 'none'),
              coalesce(q.rate_limit::text, 'none'), q.rate_interval, coalesce(q.key_concurrency::text, 'none');
END
$$;
COMMENT ON FUNCTION workflow._log_queue(workflow.queues, text, oid) IS
    'internal: log a queue''s creation or change with its limits (the audit of create_queue and alter_queue)';

-- Check the limits given to create_queue or alter_queue (NULL: not
-- given).  Bounds: 1 to 1,000,000 jobs, a rate interval of 1 ms to 1 day.
CREATE OR REPLACE FUNCTION workflow._check_queue_limits(name text, concurrency integer, rate_limit integer,
                                                      rate_interval interval, key_concurrency integer,
                                                      zero_allowed boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lo  integer := CASE WHEN zero_allowed THEN 0 ELSE 1 END;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'queue name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name !~ workflow._name_pattern() THEN
        RAISE EXCEPTION 'invalid queue name "%"', left(name, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A queue name is 1 to 128 letters, digits, "_", "-" or ".".';
    END IF;
    IF concurrency NOT BETWEEN lo AND 1000000 THEN
        RAISE EXCEPTION 'concurrency must be between % and 1000000, not %', lo, concurrency
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rate_limit NOT BETWEEN lo AND 1000000 THEN
        RAISE EXCEPTION 'rate_limit must be between % and 1000000, not %', lo, rate_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF key_concurrency NOT BETWEEN lo AND 1000000 THEN
        RAISE EXCEPTION 'key_concurrency must be between % and 1000000, not %', lo, key_concurrency
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rate_interval NOT BETWEEN interval '1 millisecond' AND interval '1 day' THEN
        RAISE EXCEPTION 'rate_interval must be between 1 millisecond and 1 day, not %', rate_interval
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._check_queue_limits(text, integer, integer, interval, integer, boolean) IS
    'internal: check the name and limits given to create_queue or alter_queue';

CREATE OR REPLACE FUNCTION workflow._create_queue(name text, concurrency integer, rate_limit integer,
                                               rate_interval interval, key_concurrency integer, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    created workflow.queues;
BEGIN
    IF rate_interval IS NULL THEN
        RAISE EXCEPTION 'rate_interval must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM workflow._check_queue_limits(name, concurrency, rate_limit, rate_interval,
                                         key_concurrency, false);
    IF name = 'default' AND NOT EXISTS (SELECT 1 FROM workflow.queues q WHERE q.name = 'default') THEN
        RAISE EXCEPTION 'queue "default" already exists'
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Set its limits with workflow.alter_queue().';
    END IF;
    INSERT INTO workflow.queues AS q (name, concurrency, rate_limit, rate_interval, key_concurrency)
    VALUES (name, concurrency, rate_limit, rate_interval, key_concurrency)
    ON CONFLICT ON CONSTRAINT queues_pkey DO NOTHING
    RETURNING q.* INTO created;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'queue "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Change its limits with workflow.alter_queue().';
    END IF;
    PERFORM workflow._log_queue(created, 'created', p_caller);
    RETURN true;
END
$$;
COMMENT ON FUNCTION workflow._create_queue(text, integer, integer, interval, integer, oid) IS
    'internal: implementation of workflow.create_queue, with the calling role (src/api.c)';

-- Arguments left NULL keep their value; 0 removes a limit.
CREATE OR REPLACE FUNCTION workflow._alter_queue(name text, concurrency integer, rate_limit integer,
                                              rate_interval interval, key_concurrency integer, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    q   workflow.queues;
BEGIN
    PERFORM workflow._check_queue_limits(name, concurrency, rate_limit, rate_interval,
                                         key_concurrency, true);
    IF name = 'default' THEN
        -- the default queue gets a row when it first gets limits
        INSERT INTO workflow.queues AS d (name) VALUES ('default')
        ON CONFLICT ON CONSTRAINT queues_pkey DO NOTHING;
    END IF;
    UPDATE workflow.queues AS u
       SET concurrency = CASE concurrency WHEN 0 THEN NULL ELSE coalesce(concurrency, u.concurrency) END,
           rate_limit = CASE rate_limit WHEN 0 THEN NULL ELSE coalesce(rate_limit, u.rate_limit) END,
           rate_interval = coalesce(rate_interval, u.rate_interval),
           key_concurrency = CASE key_concurrency WHEN 0 THEN NULL
                                  ELSE coalesce(key_concurrency, u.key_concurrency) END,
           -- a new rate starts with a full bucket
           tokens = CASE WHEN rate_limit IS NULL AND rate_interval IS NULL THEN u.tokens END,
           tokens_at = CASE WHEN rate_limit IS NULL AND rate_interval IS NULL THEN u.tokens_at END
     WHERE u.name = name
    RETURNING u.* INTO q;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'queue "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM workflow._log_queue(q, 'altered', p_caller);
    RETURN true;
END
$$;
COMMENT ON FUNCTION workflow._alter_queue(text, integer, integer, interval, integer, oid) IS
    'internal: implementation of workflow.alter_queue, with the calling role (src/api.c)';

CREATE OR REPLACE FUNCTION workflow._drop_queue(name text, p_caller oid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    used_by text;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'queue name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name = 'default' THEN
        RAISE EXCEPTION 'queue "default" cannot be dropped'
            USING ERRCODE = 'object_in_use',
                  HINT = 'Remove its limits with workflow.alter_queue(''default'', 0, 0, NULL, 0).';
    END IF;
    PERFORM workflow._lock_queue(name, true);
    IF NOT EXISTS (SELECT 1 FROM workflow.queues q WHERE q.name = name) THEN
        RAISE EXCEPTION 'queue "%" does not exist', left(name, 200)
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT format('workflow "%s" (version %s)', w.name, w.version) INTO used_by
      FROM workflow.workflows w WHERE w.queue = name ORDER BY w.name, w.version LIMIT 1;
    IF used_by IS NULL THEN
        SELECT format('job %s', j.id) INTO used_by
          FROM workflow.jobs j
         WHERE j.queue = name AND j.execution IN ('queued', 'running', 'waiting')
         LIMIT 1;
    END IF;
    IF used_by IS NOT NULL THEN
        RAISE EXCEPTION 'queue "%" is in use', name
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('It is used by %s.', used_by),
                  HINT = 'Drop the workflows that name it and let its jobs end first.';
    END IF;
    DELETE FROM workflow.queues q WHERE q.name = name;
    RAISE LOG 'workflow: queue "%" dropped by role "%"', name, p_caller::regrole;
    RETURN true;
END
$$;
COMMENT ON FUNCTION workflow._drop_queue(text, oid) IS
    'internal: implementation of workflow.drop_queue, with the calling role (src/api.c)';

-- The tokens of a rate-limited queue's bucket at time t (NULL for a queue
-- without a rate limit): a new bucket is full.
CREATE OR REPLACE FUNCTION workflow._queue_tokens(q workflow.queues, t timestamptz)
RETURNS double precision
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN q.rate_limit IS NULL THEN NULL
        WHEN q.tokens IS NULL OR q.tokens_at IS NULL OR q.tokens_at > t THEN q.rate_limit::double precision
        ELSE least(q.rate_limit::double precision,
                   q.tokens + extract(epoch FROM t - q.tokens_at)::double precision
                              * q.rate_limit / extract(epoch FROM q.rate_interval)::double precision)
    END
$$;
COMMENT ON FUNCTION workflow._queue_tokens(workflow.queues, timestamptz) IS
    'internal: the tokens in a rate-limited queue''s bucket at a time (refilled continuously, full when new)';

-- How many running jobs a queue has, and per concurrency key.
CREATE OR REPLACE FUNCTION workflow._queue_running(queue text, OUT running integer, OUT per_key jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- the running jobs are few: the partial index jobs_running holds them
    SELECT coalesce(sum(k.n), 0)::integer,
           coalesce(jsonb_object_agg(k.key, k.n) FILTER (WHERE k.key IS NOT NULL), '{}')
      FROM (SELECT j.concurrency_key AS key, count(*)::integer AS n
              FROM workflow.jobs j
             WHERE j.execution = 'running' AND j.queue = _queue_running.queue
             GROUP BY j.concurrency_key) k
$$;
COMMENT ON FUNCTION workflow._queue_running(text) IS
    'internal: the running jobs of a queue, in all and per concurrency key';

-- The queues a claim may take jobs from now, with how many each allows:
-- queues without limits allow p_limit; a limited queue allows what its
-- concurrency and rate leave.  A limited queue is locked (to the claim's
-- commit) only when it has a due job for this claim (p_type: a task type,
-- or NULL for the in-server runners) and room by an unlocked look, and
-- only when no other claim holds it: so a claim that can take nothing
-- from it takes no lock and no transaction id (a long poll sleeps), and a
-- full queue costs no waiting.  Under the lock the room is counted again
-- and the bucket refilled, at the clock (a long poll's transaction is
-- old); _queue_take uses the tokens.  For a queue with key_concurrency:
-- key_limit, the room left per key that has running jobs (key_room) and
-- the keys with none left (full_keys); rated: the queue has a rate limit
-- (the claim reports what it took to _queue_take).  p_queue: only that
-- queue (NULL: all).
CREATE OR REPLACE FUNCTION workflow._queue_open(p_limit integer, p_type text, p_queue text)
RETURNS TABLE (queue text, budget integer, key_limit integer, key_room jsonb, full_keys text[],
               rated boolean)
LANGUAGE plpgsql
ROWS 4
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan  -- see _runner_claim
AS $$
DECLARE
    q       workflow.queues;
    t       timestamptz;
    r       record;
    lap     integer;
BEGIN
    RETURN QUERY
        SELECT 'default'::text, p_limit, NULL::integer, NULL::jsonb, NULL::text[], false
         WHERE NOT EXISTS (SELECT 1 FROM workflow.queues d WHERE d.name = 'default')
           AND (p_queue IS NULL OR p_queue = 'default')
        UNION ALL
        SELECT u.name, p_limit, NULL::integer, NULL::jsonb, NULL::text[], false FROM workflow.queues u
         WHERE u.concurrency IS NULL AND u.rate_limit IS NULL AND u.key_concurrency IS NULL
           AND (p_queue IS NULL OR u.name = p_queue);
    FOR q IN
        SELECT * FROM workflow.queues l
         WHERE (l.concurrency IS NOT NULL OR l.rate_limit IS NOT NULL OR l.key_concurrency IS NOT NULL)
           AND (p_queue IS NULL OR l.name = p_queue)
         ORDER BY l.name
    LOOP
        -- a due job of this claim's kind in the queue: probes of the
        -- partial indexes of the runnable jobs, in their order (a generic
        -- plan of an EXISTS, which drops ORDER BY and LIMIT, would scan the
        -- table: the default queue's jobs make a match look near)
        IF p_type IS NULL THEN
            PERFORM FROM workflow.jobs j
              WHERE j.execution = 'queued' AND j.task_type IS NULL
                AND j.queue = q.name AND j.run_at <= clock_timestamp()
              ORDER BY j.queue, j.priority DESC, j.run_at, j.id
              LIMIT 1;
        ELSE
            PERFORM FROM workflow.jobs j
              WHERE j.execution = 'queued' AND j.task_type = p_type AND j.domain IS NULL
                AND j.queue = q.name AND j.run_at <= clock_timestamp()
              ORDER BY j.task_type, j.queue, j.priority DESC, j.run_at, j.id
              LIMIT 1;
            IF NOT FOUND THEN
                PERFORM FROM workflow.jobs j
                  WHERE j.execution = 'queued' AND j.task_type = p_type AND j.domain IS NOT NULL
                    AND j.queue = q.name AND j.run_at <= clock_timestamp()
                  ORDER BY j.task_type, j.domain, j.queue, j.priority DESC, j.run_at, j.id
                  LIMIT 1;
            END IF;
        END IF;
        CONTINUE WHEN NOT FOUND;
        -- first unlocked, then again under the lock
        FOR lap IN 1..2 LOOP
            t := clock_timestamp();
            budget := least(p_limit, floor(workflow._queue_tokens(q, t))::integer);
            IF q.concurrency IS NOT NULL OR q.key_concurrency IS NOT NULL THEN
                r := workflow._queue_running(q.name);
                budget := least(budget, q.concurrency - r.running);
            END IF;
            EXIT WHEN budget <= 0 OR lap = 2;
            SELECT * INTO q FROM workflow.queues l WHERE l.name = q.name
               FOR NO KEY UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                budget := 0;
                EXIT;
            END IF;
        END LOOP;
        CONTINUE WHEN budget <= 0;
        IF q.rate_limit IS NOT NULL THEN
            UPDATE workflow.queues b SET tokens = workflow._queue_tokens(q, t), tokens_at = t
             WHERE b.name = q.name;
        END IF;
        queue := q.name;
        rated := q.rate_limit IS NOT NULL;
        key_limit := q.key_concurrency;
        IF key_limit IS NULL THEN
            key_room := NULL;
            full_keys := NULL;
        ELSE
            SELECT coalesce(jsonb_object_agg(e.key, key_limit - e.value::integer), '{}'),
                   array_agg(e.key) FILTER (WHERE e.value::integer >= key_limit)
              INTO key_room, full_keys
              FROM jsonb_each_text(r.per_key) e;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION workflow._queue_open(integer, text, text) IS
    'internal: the queues a claim may take jobs from now and how many each allows (locks the rows of limited queues it may take from, refills rate buckets)';

-- One more job of a concurrency key in a claim: `room' holds the room
-- this claim left per queue and key so far ('{}' at first), key_room and
-- key_limit come from _queue_open.  Returns `room' with this job counted,
-- or NULL when the key has no room left (the job waits).
CREATE OR REPLACE FUNCTION workflow._key_admit(room jsonb, queue text, key text, key_room jsonb, key_limit integer)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    slot    text := queue || '/' || key;
    n       integer := coalesce((room ->> slot)::integer, (key_room ->> key)::integer, key_limit);
BEGIN
    IF key_limit IS NULL OR key IS NULL THEN
        RETURN room;
    END IF;
    IF n <= 0 THEN
        RETURN NULL;
    END IF;
    RETURN room || jsonb_build_object(slot, n - 1);
END
$$;
COMMENT ON FUNCTION workflow._key_admit(jsonb, text, text, jsonb, integer) IS
    'internal: count one more job of a concurrency key in a claim, or NULL when the key is full';

-- May a claim of one job (run_job) take it, within its queue's limits?
-- When it may, the job's token is taken.
CREATE OR REPLACE FUNCTION workflow._queue_admit(j workflow.jobs)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o   record;
BEGIN
    SELECT * INTO o FROM workflow._queue_open(1, j.task_type, j.queue) x;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF o.key_limit IS NOT NULL
       AND workflow._key_admit('{}', j.queue, j.concurrency_key, o.key_room, o.key_limit) IS NULL THEN
        RETURN false;
    END IF;
    IF o.rated THEN
        PERFORM workflow._queue_take(ARRAY[j.queue]);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION workflow._queue_admit(workflow.jobs) IS
    'internal: whether one job may be claimed within its queue''s limits (run_job); takes its token';

-- A claim took jobs of these queues (one element per job): their rate
-- buckets lose as many tokens.  The rows are locked by _queue_open.
CREATE OR REPLACE FUNCTION workflow._queue_take(p_queues text[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE workflow.queues q
       SET tokens = q.tokens - c.n
      FROM (SELECT u.name, count(*) AS n FROM unnest(p_queues) AS u(name) GROUP BY u.name) c
     WHERE q.name = c.name AND q.rate_limit IS NOT NULL
$$;
COMMENT ON FUNCTION workflow._queue_take(text[]) IS
    'internal: take the tokens of the jobs a claim took from rate-limited queues';

-------------------------------------------------------------------------------
-- Public entry points: C functions that pass the exact calling role to
-- the SECURITY DEFINER implementations above (src/api.c); administrators
-- only (90_privileges.sql)

CREATE OR REPLACE FUNCTION workflow.create_queue(name text, concurrency integer DEFAULT NULL,
                                                 rate_limit integer DEFAULT NULL,
                                                 rate_interval interval DEFAULT '1 second',
                                                 key_concurrency integer DEFAULT NULL)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.create_queue(text, integer, integer, interval, integer) IS
    'create a queue with optional limits: concurrency (running jobs), rate_limit per rate_interval (claims), key_concurrency (running jobs per concurrency key); NULL = no limit';

CREATE OR REPLACE FUNCTION workflow.alter_queue(name text, concurrency integer DEFAULT NULL,
                                                rate_limit integer DEFAULT NULL,
                                                rate_interval interval DEFAULT NULL,
                                                key_concurrency integer DEFAULT NULL)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.alter_queue(text, integer, integer, interval, integer) IS
    'change the limits of a queue at once: NULL keeps a limit, 0 removes it';

CREATE OR REPLACE FUNCTION workflow.drop_queue(name text)
RETURNS boolean
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.drop_queue(text) IS
    'drop a queue; refused while a workflow names it or a job of it is queued, running or waiting';
