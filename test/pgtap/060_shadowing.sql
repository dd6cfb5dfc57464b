-- 060_shadowing.sql: a schema planted by an ordinary role never runs as
-- another role through a SECURITY DEFINER function of the extension.
--
-- The attack: a role that may use workflows creates, in a schema of its
-- own, functions, aggregates and operators with the names of pg_catalog's
-- (hashtext, =, max, ...), and gets that schema searched before pg_catalog
-- by a definer function: through its own session search_path, through the
-- "search_path" of a workflow definition, or through pg_temp.  A shadow
-- that runs as the definer (the extension owner, a superuser) can do
-- anything, e.g. ALTER ROLE mallory SUPERUSER.
--
--   mallory    LOGIN, member of workflow_user
--   mallory_w  LOGIN, member of workflow_worker
--   mallory_a  LOGIN, member of workflow_admin
--
-- (1) Shadows, all owned by mallory, in schema mallory_s:
--     - a function for every pg_catalog function that PL/pgSQL can declare
--       (no pseudo-type argument or result but void);
--     - monomorphic versions of the polymorphic or "any" pg_catalog
--       functions that the extension's functions call (to_jsonb(text),
--       format(text, bigint), jsonb_build_object(text, jsonb), ...): an
--       exact match wins over a polymorphic one even when pg_catalog is
--       searched first;
--     - an aggregate for every plain pg_catalog aggregate (max, min, count,
--       sum, array_agg, jsonb_agg, jsonb_object_agg, string_agg, bool_or,
--       bool_and, ... for the common types; count(*));
--     - an operator for every pg_catalog operator on non-polymorphic types,
--       and for the common types (the enums workflow.execution and
--       workflow.phase, arrays) of the polymorphic ones;
--     - temporary views, created by mallory, named as every catalog
--       relation mallory may read and as the extension's tables and views.
--     Each shadow does what its original does -- so that every code path is
--     reached -- but first, when current_user is not one of the three
--     mallory roles, advances the sequence mallory_s.hits (sequences are not
--     transactional: a hit survives the rollback of the statement that
--     raised), prints a WARNING naming itself, and tries ALTER ROLE mallory
--     SUPERUSER.
-- (2) The three roles call every function granted to them -- every public
--     entry point of the SECURITY DEFINER implementations -- and read every
--     view, with arguments that go deep (a definition whose "search_path"
--     is "mallory_s, pg_catalog", targets, idempotency keys, the external
--     task protocol, the runner protocol, pg_cron schedules, errors), under
--     three session search_paths:
--       "mallory_s, pg_catalog, public"           shadows before pg_catalog
--       "mallory_s, public"                       pg_catalog searched first, implicitly
--       "pg_temp, mallory_s, pg_catalog, public"  temporary relations first
--     Each call's outcome is checked, and after each call: no shadow ran as
--     another role (mallory_s.hits did not move).
-- (3) At the end: mallory_s.hits never moved, mallory is not a superuser,
--     and the workflow whose definition names "mallory_s, pg_catalog" is
--     stored with that search_path (it is the tasks', which run as the job's
--     creator) with its jobs.
-- (4) Statically: the calls cover every function granted to the three
--     roles (a new one fails the test until it is added here); every
--     SECURITY DEFINER function of the extension pins search_path =
--     pg_catalog, pg_temp; no function of the extension changes search_path
--     in its body.
--
-- Everything, roles included, is created inside the test transaction and
-- rolled back.  The superuser's own statements run with pg_temp last in its
-- search_path and without mallory_s, so they never pick a shadow.

BEGIN;

SET LOCAL search_path = public, pg_catalog, pg_temp;

SELECT plan(652);

-------------------------------------------------------------------------------
-- Roles, the schema, the hit counter
-------------------------------------------------------------------------------

CREATE ROLE mallory LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE mallory_w LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
CREATE ROLE mallory_a LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
GRANT workflow_user TO mallory;
GRANT workflow_worker TO mallory_w;
GRANT workflow_admin TO mallory_a;

CREATE SCHEMA mallory_s AUTHORIZATION mallory;
GRANT USAGE ON SCHEMA mallory_s TO PUBLIC;

-- pg_cron is preloaded in the pgTAP cluster (test/conf/pgtap.conf): the
-- extension is created here and rolled back, as in 040_security.sql
CREATE EXTENSION IF NOT EXISTS pg_cron;
GRANT USAGE ON SCHEMA cron TO mallory;

SET LOCAL ROLE mallory;

CREATE SEQUENCE mallory_s.hits;
GRANT USAGE, UPDATE, SELECT ON SEQUENCE mallory_s.hits TO PUBLIC;

-- What every shadow does first when it runs as another role.
CREATE FUNCTION mallory_s._hit(what text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.nextval('mallory_s.hits'::pg_catalog.regclass);
    IF pg_catalog.currval('mallory_s.hits'::pg_catalog.regclass) OPERATOR(pg_catalog.<=) 20 THEN
        RAISE WARNING 'shadow %, planted by mallory, ran as %', what, CURRENT_USER;
    END IF;
    BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
END
$$;

-- The same, for a shadowing relation (used in a WHERE clause).
CREATE FUNCTION mallory_s._hit_rel(what text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF CURRENT_USER OPERATOR(pg_catalog.<>) ALL ('{mallory,mallory_w,mallory_a}'::pg_catalog.name[]) THEN
        PERFORM mallory_s._hit(what);
    END IF;
    RETURN true;
END
$$;

RESET ROLE;

-------------------------------------------------------------------------------
-- Planting helpers (superuser's, used only to generate the shadows)
-------------------------------------------------------------------------------

-- The body of a shadow: the hit check, then p_tail.
CREATE FUNCTION pg_temp.body(p_what text, p_tail text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT format(E'BEGIN\n'
                  '    IF CURRENT_USER OPERATOR(pg_catalog.<>) ALL (''{mallory,mallory_w,mallory_a}''::pg_catalog.name[]) THEN\n'
                  '        PERFORM mallory_s._hit(%L);\n'
                  '    END IF;\n'
                  '    %s\n'
                  'END', p_what, p_tail)
$$;

-- Run p_sql; whether it worked (a shadow that cannot be created is skipped).
CREATE FUNCTION pg_temp.try(p_sql text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE p_sql;
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    RETURN false;
END
$$;

-- The type a polymorphic type stands for when its element type is p_t
-- (NULL when it cannot); other types stay themselves.
CREATE FUNCTION pg_temp.subst(p_type oid, p_t oid)
RETURNS oid LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_type IN ('anyelement'::regtype, 'anycompatible'::regtype, '"any"'::regtype) THEN p_t
        WHEN p_type IN ('anynonarray'::regtype, 'anycompatiblenonarray'::regtype) THEN
             CASE WHEN (SELECT typcategory FROM pg_catalog.pg_type WHERE oid = p_t) <> 'A' THEN p_t END
        WHEN p_type IN ('anyarray'::regtype, 'anycompatiblearray'::regtype) THEN
             (SELECT nullif(typarray, 0) FROM pg_catalog.pg_type WHERE oid = p_t AND typcategory <> 'A')
        WHEN p_type = 'anyenum'::regtype THEN
             CASE WHEN (SELECT typtype FROM pg_catalog.pg_type WHERE oid = p_t) = 'e' THEN p_t END
        WHEN (SELECT typtype FROM pg_catalog.pg_type WHERE oid = p_type) = 'p' THEN NULL
        ELSE p_type
    END
$$;

-- A type name as CREATE OPERATOR takes it (one word).
CREATE FUNCTION pg_temp.tname(p_type oid)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format('%I.%I', n.nspname, t.typname)
      FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
     WHERE t.oid = p_type
$$;

-- The common types the polymorphic shadows are made for.
CREATE FUNCTION pg_temp.common_types()
RETURNS oid[] LANGUAGE sql STABLE AS $$
    SELECT ARRAY['int4', 'int8', 'text', 'jsonb', 'interval', 'timestamptz', 'oid', 'regrole',
                 'bool', 'numeric', 'float8', 'name', 'workflow.execution', 'workflow.phase',
                 'int8[]', 'text[]', 'jsonb[]']::regtype[]::oid[]
$$;

CREATE TEMP TABLE planted (kind text, n integer);
GRANT ALL ON planted TO PUBLIC;

-------------------------------------------------------------------------------
-- (1) Shadowing functions
-------------------------------------------------------------------------------

SET LOCAL ROLE mallory;

-- every pg_catalog function PL/pgSQL can declare, with the same arguments
-- (names and defaults included, for calls with named arguments)
DO $$
DECLARE
    p       record;
    n       integer := 0;
    call    text;
    tail    text;
BEGIN
    FOR p IN
        SELECT f.oid, f.proname, f.proretset, f.prorettype, f.proallargtypes,
               pg_catalog.pg_get_function_arguments(f.oid) AS args,
               pg_catalog.pg_get_function_result(f.oid) AS result,
               (SELECT pg_catalog.string_agg(
                           CASE WHEN f.provariadic <> 0 AND a.o = f.pronargs THEN 'VARIADIC ' ELSE '' END
                           || '$' || a.o, ', ' ORDER BY a.o)
                  FROM pg_catalog.unnest(f.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)) AS params
          FROM pg_catalog.pg_proc f
         WHERE f.pronamespace = 'pg_catalog'::regnamespace AND f.prokind = 'f'
           AND NOT EXISTS (SELECT FROM pg_catalog.unnest(coalesce(f.proallargtypes, f.proargtypes::oid[])) t
                             JOIN pg_catalog.pg_type y ON y.oid = t WHERE y.typtype = 'p')
           AND ((SELECT y.typtype FROM pg_catalog.pg_type y WHERE y.oid = f.prorettype) <> 'p'
                OR f.prorettype = 'void'::regtype
                OR (f.prorettype = 'record'::regtype AND f.proretset AND f.proallargtypes IS NOT NULL))
           AND (f.proretset OR NOT coalesce(f.proargmodes && '{o,b,t}'::"char"[], false))
         ORDER BY f.oid
    LOOP
        call := format('pg_catalog.%I(%s)', p.proname, coalesce(p.params, ''));
        IF p.proretset THEN
            tail := format('RETURN QUERY SELECT * FROM %s; RETURN;', call);
        ELSIF p.prorettype = 'void'::regtype THEN
            tail := format('PERFORM %s; RETURN;', call);
        ELSE
            tail := format('RETURN %s;', call);
        END IF;
        IF pg_temp.try(format('CREATE FUNCTION mallory_s.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
                              p.proname, p.args, p.result,
                              pg_temp.body(p.oid::regprocedure::text, tail))) THEN
            n := n + 1;
        END IF;
    END LOOP;
    INSERT INTO planted VALUES ('function', n);
END
$$;

-- monomorphic versions, for the common types, of the polymorphic and "any"
-- pg_catalog functions that the extension's functions call
DO $$
DECLARE
    p       record;
    t       oid;
    t2      oid;
    k       integer;
    n       integer := 0;
    types   oid[];
    lists   text[];
    i       integer;
    args    text;
    params  text;
    probe   text;
    ret     oid;
    tail    text;
BEGIN
    FOR p IN
        SELECT f.oid, f.proname, f.proretset, f.prorettype, f.proargtypes::oid[] AS argtypes,
               f.provariadic
          FROM pg_catalog.pg_proc f
         WHERE f.pronamespace = 'pg_catalog'::regnamespace AND f.prokind = 'f'
           AND NOT coalesce(f.proargmodes && '{o,b,t}'::"char"[], false)
           AND EXISTS (SELECT FROM pg_catalog.unnest(f.proargtypes::oid[] || f.prorettype) x
                         JOIN pg_catalog.pg_type y ON y.oid = x
                        WHERE y.typtype = 'p' AND x <> 'void'::regtype)
           AND f.proname IN (SELECT pg_catalog.lower(m[1])
                               FROM pg_catalog.pg_proc w,
                                    pg_catalog.regexp_matches(w.prosrc, '([A-Za-z_][A-Za-z0-9_]*)\s*\(', 'g') m
                              WHERE w.pronamespace = 'workflow'::regnamespace)
         ORDER BY f.oid
    LOOP
        FOREACH t IN ARRAY pg_temp.common_types() LOOP
            -- the argument lists: each polymorphic argument as t; a
            -- VARIADIC "any" as 1 to 3 arguments of type t, and as pairs
            -- (text, t) and (t, any common type)
            types := ARRAY(SELECT pg_temp.subst(a, t) FROM pg_catalog.unnest(p.argtypes) a);
            IF p.provariadic = '"any"'::regtype THEN
                types := types[1:pg_catalog.cardinality(types) - 1];
                lists := ARRAY[(types || t)::text, (types || ARRAY[t, t])::text,
                               (types || ARRAY[t, t, t])::text,
                               (types || ARRAY['text'::regtype::oid, t])::text,
                               (types || ARRAY['text'::regtype::oid, t, 'text'::regtype::oid, t])::text];
                FOREACH t2 IN ARRAY pg_temp.common_types() LOOP
                    lists := lists || (types || ARRAY[t, t2])::text;
                END LOOP;
            ELSE
                lists := ARRAY[types::text];
            END IF;
            FOR i IN 1 .. pg_catalog.array_length(lists, 1) LOOP
                types := lists[i]::oid[];
                CONTINUE WHEN array_position(types, NULL) IS NOT NULL;
                ret := pg_temp.subst(p.prorettype, t);
                CONTINUE WHEN ret IS NULL AND p.prorettype <> 'void'::regtype;
                SELECT pg_catalog.string_agg(pg_catalog.format_type(x, NULL), ', ' ORDER BY o),
                       pg_catalog.string_agg(format('$%s::%s', o, pg_catalog.format_type(x, NULL)), ', ' ORDER BY o),
                       pg_catalog.string_agg(format('NULL::%s', pg_catalog.format_type(x, NULL)), ', ' ORDER BY o)
                  INTO args, params, probe
                  FROM pg_catalog.unnest(types) WITH ORDINALITY AS u(x, o);
                -- the call must resolve to pg_catalog's
                CONTINUE WHEN NOT pg_temp.try(format('SELECT pg_catalog.%I(%s) WHERE false', p.proname, probe));
                IF p.proretset THEN
                    tail := format('RETURN QUERY SELECT * FROM pg_catalog.%I(%s); RETURN;', p.proname, params);
                ELSIF p.prorettype = 'void'::regtype THEN
                    tail := format('PERFORM pg_catalog.%I(%s); RETURN;', p.proname, params);
                ELSE
                    tail := format('RETURN pg_catalog.%I(%s);', p.proname, params);
                END IF;
                IF pg_temp.try(format('CREATE FUNCTION mallory_s.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS %L',
                                      p.proname, args, CASE WHEN p.proretset THEN 'SETOF ' ELSE '' END,
                                      coalesce(pg_catalog.format_type(ret, NULL), 'void'),
                                      pg_temp.body(format('%s(%s)', p.proname, args), tail))) THEN
                    n := n + 1;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
    INSERT INTO planted VALUES ('polymorphic function', n);
END
$$;

RESET ROLE;

-------------------------------------------------------------------------------
-- (1) Shadowing aggregates
-------------------------------------------------------------------------------

-- Every plain pg_catalog aggregate, for its argument types or, when they
-- are polymorphic or "any", for the common types (count(*) apart).  The
-- state collects the arguments as text; the final function, which also
-- runs for no rows, hands them to the original aggregate in their order,
-- so the result is the original's (ORDER BY, DISTINCT and FILTER of the
-- call apply before the state function).
SET LOCAL ROLE mallory;

DO $$
DECLARE
    a       record;
    t       oid;
    t2      oid;
    n       integer := 0;
    lists   text[];
    types   oid[];
    i       integer;
    k       integer;
    args    text;
    sargs   text;
    probe   text;
    pick    text;
    ret     text;
    what    text;
    sf      text;
    ff      text;
BEGIN
    -- count(*)
    EXECUTE format('CREATE FUNCTION mallory_s._count_star_sf(s int8) RETURNS int8 LANGUAGE plpgsql AS %L',
                   pg_temp.body('count(*)', 'RETURN s OPERATOR(pg_catalog.+) 1;'));
    EXECUTE format('CREATE FUNCTION mallory_s._count_star_ff(s int8) RETURNS int8 LANGUAGE plpgsql AS %L',
                   pg_temp.body('count(*)', 'RETURN s;'));
    CREATE AGGREGATE mallory_s.count(*) (SFUNC = mallory_s._count_star_sf, STYPE = int8,
                                         FINALFUNC = mallory_s._count_star_ff, INITCOND = '0');
    n := 1;

    FOR a IN
        SELECT f.oid, f.proname, f.proargtypes::oid[] AS argtypes, f.prorettype
          FROM pg_catalog.pg_proc f
          JOIN pg_catalog.pg_aggregate g ON g.aggfnoid = f.oid
         WHERE f.pronamespace = 'pg_catalog'::regnamespace AND f.prokind = 'a'
           AND g.aggkind = 'n' AND f.pronargs > 0 AND f.provariadic = 0
         ORDER BY f.oid
    LOOP
        lists := '{}';
        IF EXISTS (SELECT FROM pg_catalog.unnest(a.argtypes) x JOIN pg_catalog.pg_type y ON y.oid = x
                    WHERE y.typtype = 'p') THEN
            FOREACH t IN ARRAY pg_temp.common_types() LOOP
                lists := lists || ARRAY(SELECT pg_temp.subst(x, t) FROM pg_catalog.unnest(a.argtypes) x)::text;
                IF pg_catalog.array_to_string(a.argtypes, ',') = '2276,2276' THEN  -- ("any", "any")
                    FOREACH t2 IN ARRAY ARRAY['text', 'name']::regtype[] LOOP
                        lists := lists || ARRAY[t2, t]::text;
                    END LOOP;
                END IF;
            END LOOP;
        ELSE
            lists := ARRAY[a.argtypes::text];
        END IF;
        FOR i IN 1 .. coalesce(pg_catalog.array_length(lists, 1), 0) LOOP
            types := lists[i]::oid[];
            CONTINUE WHEN array_position(types, NULL) IS NOT NULL;
            k := pg_catalog.cardinality(types);
            SELECT pg_catalog.string_agg(pg_catalog.format_type(x, NULL), ', ' ORDER BY o),
                   pg_catalog.string_agg(format('a%s %s', o, pg_catalog.format_type(x, NULL)), ', ' ORDER BY o),
                   pg_catalog.string_agg(format('NULL::%s', pg_catalog.format_type(x, NULL)), ', ' ORDER BY o),
                   pg_catalog.string_agg(format('s[(i OPERATOR(pg_catalog.*) %s) OPERATOR(pg_catalog.-) %s]::%s',
                                                k, k - o, pg_catalog.format_type(x, NULL)), ', ' ORDER BY o)
              INTO args, sargs, probe, pick
              FROM pg_catalog.unnest(types) WITH ORDINALITY AS u(x, o);
            -- the call must resolve to a pg_catalog aggregate: its result type
            BEGIN
                EXECUTE format('CREATE TEMP VIEW mallory_probe AS SELECT pg_catalog.%I(%s) AS r',
                               a.proname, probe);
                SELECT pg_catalog.format_type(atttypid, NULL) INTO ret
                  FROM pg_catalog.pg_attribute WHERE attrelid = 'pg_temp.mallory_probe'::regclass AND attnum = 1;
                DROP VIEW pg_temp.mallory_probe;
            EXCEPTION WHEN OTHERS THEN
                CONTINUE;
            END;
            what := format('%s(%s)', a.proname, args);
            sf := format('mallory_s.%I', '_agg_sf_' || a.oid || '_' || i);
            ff := format('mallory_s.%I', '_agg_ff_' || a.oid || '_' || i);
            CONTINUE WHEN NOT pg_temp.try(format(
                'CREATE FUNCTION %s(s text[], %s) RETURNS text[] LANGUAGE plpgsql AS %L', sf, sargs,
                pg_temp.body(what, format('RETURN s OPERATOR(pg_catalog.||) ARRAY[%s]::pg_catalog.text[];',
                                          (SELECT pg_catalog.string_agg(format('a%s::pg_catalog.text', o), ', ' ORDER BY o)
                                             FROM pg_catalog.generate_series(1, k) o)))));
            CONTINUE WHEN NOT pg_temp.try(format(
                'CREATE FUNCTION %s(s text[]) RETURNS %s LANGUAGE plpgsql AS %L', ff, ret,
                pg_temp.body(what, format('RETURN (SELECT pg_catalog.%I(%s ORDER BY i) '
                                          'FROM pg_catalog.generate_series(1, pg_catalog.cardinality(s) OPERATOR(pg_catalog./) %s) AS i);',
                                          a.proname, pick, k))));
            IF pg_temp.try(format('CREATE AGGREGATE mallory_s.%I(%s) (SFUNC = %s, STYPE = text[], FINALFUNC = %s, INITCOND = ''{}'')',
                                  a.proname, args, sf, ff)) THEN
                n := n + 1;
            END IF;
        END LOOP;
    END LOOP;
    INSERT INTO planted VALUES ('aggregate', n);
END
$$;

-------------------------------------------------------------------------------
-- (1) Shadowing operators
-------------------------------------------------------------------------------

-- Every pg_catalog operator on non-polymorphic types, with the shadow of
-- its function; the polymorphic ones (arrays, enums, ...) for the common
-- types, with a function that applies pg_catalog's operator.
DO $$
DECLARE
    o       record;
    t       oid;
    n       integer := 0;
    l       oid;
    r       oid;
    fn      text;
    ret     text;
BEGIN
    FOR o IN
        SELECT p.oid, p.oprname, p.oprkind, p.oprleft, p.oprright, p.oprresult, p.oprcode,
               f.proname, f.proargtypes::oid[] AS argtypes
          FROM pg_catalog.pg_operator p
          JOIN pg_catalog.pg_proc f ON f.oid = p.oprcode
         WHERE p.oprnamespace = 'pg_catalog'::regnamespace AND p.oprkind IN ('b', 'l')
         ORDER BY p.oid
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.unnest(ARRAY[o.oprleft, o.oprright, o.oprresult]) x
                         JOIN pg_catalog.pg_type y ON y.oid = x WHERE y.typtype = 'p') THEN
            fn := pg_catalog.to_regprocedure(format('mallory_s.%I(%s)', o.proname,
                      (SELECT pg_catalog.string_agg(pg_catalog.format_type(x, NULL), ',' ORDER BY i)
                         FROM pg_catalog.unnest(o.argtypes) WITH ORDINALITY AS u(x, i))))::text;
            CONTINUE WHEN fn IS NULL;
            IF pg_temp.try(format('CREATE OPERATOR mallory_s.%s (FUNCTION = mallory_s.%I, %s RIGHTARG = %s)',
                                  o.oprname, o.proname,
                                  CASE WHEN o.oprkind = 'b' THEN format('LEFTARG = %s,', pg_temp.tname(o.oprleft)) ELSE '' END,
                                  pg_temp.tname(o.oprright))) THEN
                n := n + 1;
            END IF;
        ELSE
            FOREACH t IN ARRAY pg_temp.common_types() LOOP
                l := CASE WHEN o.oprkind = 'b' THEN pg_temp.subst(o.oprleft, t) END;
                r := pg_temp.subst(o.oprright, t);
                CONTINUE WHEN r IS NULL OR (o.oprkind = 'b' AND l IS NULL);
                BEGIN
                    EXECUTE format('CREATE TEMP VIEW mallory_probe AS SELECT %s OPERATOR(pg_catalog.%s) NULL::%s AS r',
                                   CASE WHEN o.oprkind = 'b' THEN format('NULL::%s', pg_catalog.format_type(l, NULL)) ELSE '' END,
                                   o.oprname, pg_catalog.format_type(r, NULL));
                    SELECT pg_catalog.format_type(atttypid, NULL) INTO ret
                      FROM pg_catalog.pg_attribute WHERE attrelid = 'pg_temp.mallory_probe'::regclass AND attnum = 1;
                    DROP VIEW pg_temp.mallory_probe;
                EXCEPTION WHEN OTHERS THEN
                    CONTINUE;
                END;
                fn := format('mallory_s.%I', '_op_' || o.oid || '_' || t);
                CONTINUE WHEN NOT pg_temp.try(format(
                    'CREATE FUNCTION %s(%s) RETURNS %s LANGUAGE plpgsql AS %L', fn,
                    concat_ws(', ', pg_catalog.format_type(l, NULL), pg_catalog.format_type(r, NULL)), ret,
                    pg_temp.body(format('operator %s(%s, %s)', o.oprname,
                                        coalesce(pg_catalog.format_type(l, NULL), 'NONE'), pg_catalog.format_type(r, NULL)),
                                 format('RETURN %s OPERATOR(pg_catalog.%s) $%s;',
                                        CASE WHEN o.oprkind = 'b' THEN '$1' ELSE '' END, o.oprname,
                                        CASE WHEN o.oprkind = 'b' THEN 2 ELSE 1 END))));
                IF pg_temp.try(format('CREATE OPERATOR mallory_s.%s (FUNCTION = %s, %s RIGHTARG = %s)',
                                      o.oprname, fn,
                                      CASE WHEN o.oprkind = 'b' THEN format('LEFTARG = %s,', pg_temp.tname(l)) ELSE '' END,
                                      pg_temp.tname(r))) THEN
                    n := n + 1;
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    INSERT INTO planted VALUES ('operator', n);
END
$$;

-------------------------------------------------------------------------------
-- (1) Shadowing relations in pg_temp
-------------------------------------------------------------------------------

-- mallory's temporary views named as every catalog relation mallory may
-- read and as the extension's tables and views (they are found first when
-- pg_temp is first in the search_path, or not in it at all).
DO $$
DECLARE
    c       record;
    n       integer := 0;
BEGIN
    FOR c IN
        SELECT x.relname, x.relnamespace::regnamespace AS nsp
          FROM pg_catalog.pg_class x
         WHERE x.relnamespace IN ('pg_catalog'::regnamespace, 'workflow'::regnamespace)
           AND x.relkind IN ('r', 'v', 'p', 'm', 'f')
           AND pg_catalog.has_table_privilege(x.oid, 'SELECT')
         ORDER BY x.relnamespace, x.relname
    LOOP
        IF pg_temp.try(format('CREATE TEMP VIEW %I AS SELECT * FROM %s.%I WHERE mallory_s._hit_rel(%L)',
                              c.relname, c.nsp, c.relname, c.nsp || '.' || c.relname || ' (temporary view)')) THEN
            n := n + 1;
        END IF;
    END LOOP;
    INSERT INTO planted VALUES ('temporary view', n);
END
$$;

RESET ROLE;

SELECT is((SELECT n FROM planted WHERE kind = 'function') > 2000, true,
          'shadows: more than 2000 pg_catalog functions shadowed');
SELECT is((SELECT count(*)::int FROM planted WHERE n > 0), 5,
          'shadows: polymorphic specializations, aggregates, operators and temporary views planted too');
SELECT is(ARRAY(SELECT format('%s(%s)', p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
                  FROM pg_catalog.pg_proc p
                 WHERE p.pronamespace = 'mallory_s'::regnamespace
                   AND format('%s(%s)', p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
                       IN ('hashtext(text)', 'max(integer)', 'count()', 'jsonb_agg(jsonb)', 'to_jsonb(text)',
                           'format(text, bigint)', 'jsonb_build_object(text, jsonb)', 'now()', 'set_config(text, text, boolean)')
                 ORDER BY 1),
          '{"count()","format(text, bigint)","hashtext(text)","jsonb_agg(jsonb)","jsonb_build_object(text, jsonb)","max(integer)","now()","set_config(text, text, boolean)","to_jsonb(text)"}',
          'shadows: the usual suspects are among them');
SELECT is(ARRAY(SELECT format('%s %s %s', o.oprleft::regtype, o.oprname, o.oprright::regtype)
                  FROM pg_catalog.pg_operator o
                 WHERE o.oprnamespace = 'mallory_s'::regnamespace
                   AND format('%s %s %s', o.oprleft::regtype, o.oprname, o.oprright::regtype)
                       IN ('integer = integer', 'text = text', 'jsonb ->> text', 'workflow.execution = workflow.execution',
                           'bigint[] @> bigint[]', 'timestamp with time zone + interval')
                 ORDER BY 1),
          '{"bigint[] @> bigint[]","integer = integer","jsonb ->> text","text = text","timestamp with time zone + interval","workflow.execution = workflow.execution"}',
          'shadows: and the usual operators');
SELECT is(pg_catalog.pg_get_userbyid(p.proowner)::text, 'mallory', 'shadows: owned by mallory')
  FROM pg_catalog.pg_proc p WHERE p.oid = 'mallory_s.hashtext(text)'::regprocedure;

-- the harness: a shadow records a hit as another role, not as mallory
SET LOCAL ROLE mallory;
SET LOCAL search_path = mallory_s, pg_catalog, public;
SELECT hashtext('x') AS _, max(x) AS _m, 1 + 1 AS _p FROM (VALUES (1)) v(x) \gset
RESET ROLE;
SET LOCAL search_path = public, pg_catalog, pg_temp;
SELECT is((SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM mallory_s.hits), 0::bigint,
          'harness: shadows called by mallory record no hit');
SET LOCAL client_min_messages = error;  -- the shadow's WARNING, expected here
SELECT is(mallory_s.hashtext('x'), pg_catalog.hashtext('x'), 'harness: a shadow returns what its original returns');
RESET client_min_messages;
SELECT is((SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM mallory_s.hits), 1::bigint,
          'harness: a shadow called by another role records a hit');
SELECT is((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'mallory'), true,
          'harness: ... and makes mallory a superuser');
ALTER ROLE mallory NOSUPERUSER;
-- hits are counted from here on
SELECT pg_catalog.setval('mallory_s.hits', 1, false) AS _ \gset
SELECT is((SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM mallory_s.hits), 0::bigint,
          'harness: the hit counter is back at 0');

-------------------------------------------------------------------------------
-- (2) The calls
-------------------------------------------------------------------------------

-- The hits so far.
CREATE FUNCTION pg_temp.hits()
RETURNS bigint LANGUAGE sql AS $$
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM mallory_s.hits
$$;

-- Run p_sql as p_role with search_path p_path: 'ok: <first column of the
-- first row>' (effects kept) or 'SQLSTATE: message' (effects rolled back),
-- and the hits it caused.  The role is set before the search_path and
-- reset after it, so that no statement of this function runs as the
-- superuser under mallory's search_path.
CREATE FUNCTION pg_temp.call(p_role name, p_path text, p_sql text, OUT got text, OUT hits bigint)
LANGUAGE plpgsql AS $$
DECLARE
    before  bigint := pg_temp.hits();
    r       text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', p_role);
        PERFORM pg_catalog.set_config('search_path', p_path, true);
        EXECUTE p_sql INTO r;
        PERFORM pg_catalog.set_config('search_path', 'public, pg_catalog, pg_temp', true);
        RESET ROLE;
        got := 'ok: ' || coalesce(r, '<null>');
    EXCEPTION WHEN OTHERS THEN
        -- the role and the search_path are back with the subtransaction
        got := SQLSTATE || ': ' || SQLERRM;
    END;
    hits := pg_temp.hits() - before;
END
$$;

CREATE FUNCTION pg_temp.id(p_got text)
RETURNS bigint LANGUAGE sql AS $$
    SELECT substring(p_got FROM '^ok: (\d+)$')::bigint
$$;

CREATE FUNCTION pg_temp.lease(p_job bigint)
RETURNS bigint LANGUAGE sql AS $$
    SELECT lease FROM workflow.jobs WHERE id = p_job
$$;

-- Every entry point, as mallory (workflow_user), mallory_w (workflow_worker)
-- and mallory_a (workflow_admin), with search_path p_path; names carry
-- p_tag.  Two rows per call: its outcome against a pattern, and its hits.
CREATE FUNCTION pg_temp.scenario(p_tag text, p_path text)
RETURNS TABLE (o_kind text, o_label text, o_got text, o_expected text)
LANGUAGE plpgsql AS $$
DECLARE
    c       record;
    steps   text[] := '{}';
    t       text := p_tag;
    got     text;
    h       bigint;
    leases  bigint[] := '{}';
BEGIN
    -- each call: (role, label, sql, expected pattern); the ids of earlier
    -- calls are filled in as they come
    FOR c IN
        SELECT * FROM (VALUES
        (1, 'mallory', 'create_workflow, "search_path": "mallory_s, pg_catalog"',
            format($q$SELECT workflow.create_workflow('{"name": "shd_esc_%s", "search_path": "mallory_s, pg_catalog",
                      "chain": [{"name": "a", "sql": "select 1"}]}')$q$, t), '^ok: 1$'),
        (2, 'mallory', 'create_workflow, "search_path": "mallory_s"',
            format($q$SELECT workflow.create_workflow('{"name": "shd_esc2_%s", "search_path": "mallory_s",
                      "chain": [{"name": "a", "sql": "select 1"}]}')$q$, t), '^ok: 1$'),
        (3, 'mallory', 'create_workflow, "search_path": "pg_temp, mallory_s, pg_catalog, public"',
            format($q$SELECT workflow.create_workflow('{"name": "shd_esc3_%s", "search_path": "pg_temp, mallory_s, pg_catalog, public",
                      "chain": [{"name": "a", "sql": "select 1"}]}')$q$, t), '^ok: 1$'),
        (4, 'mallory', 'create_workflow, every field (default search_path)',
            format($q$SELECT workflow.create_workflow('{"name": "shd_sql_%s", "description": "d", "timeout": "10 min",
                      "max_attempts": 3, "initial_delay": 1, "max_delay": "1 min", "on_stale": "retry",
                      "chain": [{"name": "a", "sql": "select 1", "attempts": 2, "backoff": "exponential",
                                 "delay": "1 s", "max_delay": "10 s", "timeout": "30 s", "fallback": "select 2",
                                 "description": "a"},
                                {"name": "b", "sql": "select $1"}],
                      "onerror": [{"name": "e", "sql": "select 3"}],
                      "oncancel": [{"name": "c", "sql": "select 4"}]}')$q$, t), '^ok: 1$'),
        (5, 'mallory', 'create_workflow, a new version',
            format($q$SELECT workflow.create_workflow('{"name": "shd_sql_%s", "search_path": "public, pg_catalog",
                      "chain": [{"name": "a", "sql": "select 1", "backoff": "linear", "attempts": 2}, {"name": "b", "sql": "select 2"}]}')$q$, t), '^ok: 2$'),
        (6, 'mallory', 'create_workflow, external and wait tasks',
            format($q$SELECT workflow.create_workflow('{"name": "shd_ext_%s",
                      "chain": [{"name": "x", "task_type": "shd.x.%s", "attempts": 2, "delay": 0},
                                {"name": "t", "wait": "1 min"}, {"name": "s", "sql": "select 1"}],
                      "onerror": [{"name": "e", "sql": "select 1"}]}')$q$, t, t), '^ok: 1$'),
        (7, 'mallory', 'create_workflow, a wait for a signal',
            format($q$SELECT workflow.create_workflow('{"name": "shd_wait_%s", "chain": [{"name": "w", "wait": "signal"}]}')$q$, t), '^ok: 1$'),
        (8, 'mallory', 'create_workflow, to be dropped',
            format($q$SELECT workflow.create_workflow('{"name": "shd_drop_%s", "chain": [{"name": "a", "sql": "select 1"}]}')$q$, t), '^ok: 1$'),
        (9, 'mallory', 'create_workflow, an unknown field: 22023',
            format($q$SELECT workflow.create_workflow('{"name": "shd_bad_%s", "evil": 1, "chain": [{"name": "a", "sql": "select 1"}]}')$q$, t), '^22023: '),
        (10, 'mallory', 'create_workflow, a search_path that is not a list: 22023',
            format($q$SELECT workflow.create_workflow('{"name": "shd_bad_%s", "search_path": "a,,b", "chain": [{"name": "a", "sql": "select 1"}]}')$q$, t), '^22023: '),
        (11, 'mallory', 'create_workflow, invalid tasks: 22023',
            format($q$SELECT workflow.create_workflow('{"name": "shd_bad_%s", "chain": [{"name": "a", "sql": "select 1", "wait": "1 s"}]}')$q$, t), '^22023: '),
        (12, 'mallory', 'create_job of the workflow with "search_path": "mallory_s, pg_catalog"',
            format($q$SELECT workflow.create_job('shd_esc_%s')$q$, t), '^ok: \d+$'),
        (13, 'mallory', 'create_job of the workflow with "search_path": "mallory_s"',
            format($q$SELECT workflow.create_job('shd_esc2_%s', '{"k": "v"}')$q$, t), '^ok: \d+$'),
        (14, 'mallory', 'create_job with a target, an idempotency key and priority 0',
            format($q$SELECT workflow.create_job('shd_sql_%s', '{"n": 1}', target => 'tgt-%s', run_at => now(),
                      priority => 0, idempotency_key => 'key-%s')$q$, t, t, t), '^ok: \d+$'),
        (15, 'mallory', 'create_job with the same idempotency key: the same job',
            format($q$SELECT workflow.create_job('shd_sql_%s', '{"n": 1}', target => 'tgt-%s', run_at => now(),
                      priority => 0, idempotency_key => 'key-%s')$q$, t, t, t), '^ok: J14$'),
        (16, 'mallory', 'create_job of version 1, later',
            format($q$SELECT workflow.create_job('shd_sql_%s', '{}', run_at => now() + interval '1 hour',
                      priority => 0, version => 1)$q$, t), '^ok: \d+$'),
        (17, 'mallory', 'create_job of a workflow that does not exist: 42704',
            $q$SELECT workflow.create_job('shd_nothing')$q$, '^42704: '),
        (18, 'mallory', 'get_job',
            $q$SELECT workflow.get_job(J14)->>'execution'$q$, '^ok: queued$'),
        (19, 'mallory', 'add_info',
            $q$SELECT workflow.add_info(J14, '{"progress": 1}')$q$, '^ok: $'),
        (20, 'mallory', 'job_info',
            $q$SELECT count(*) FROM workflow.job_info(J14)$q$, '^ok: 1$'),
        (21, 'mallory', 'cancel_job',
            $q$SELECT workflow.cancel_job(J14, 'why not')$q$, '^ok: true$'),
        (22, 'mallory', 'get_job of a canceled job',
            $q$SELECT workflow.get_job(J14)->>'execution'$q$, '^ok: canceled$'),
        (23, 'mallory', 'retry_job',
            $q$SELECT workflow.retry_job(J14)$q$, '^ok: true$'),
        (24, 'mallory', 'create_job of the wait workflow (1)',
            format($q$SELECT workflow.create_job('shd_wait_%s')$q$, t), '^ok: \d+$'),
        (25, 'mallory', 'create_job of the wait workflow (2)',
            format($q$SELECT workflow.create_job('shd_wait_%s')$q$, t), '^ok: \d+$'),
        (26, 'mallory', 'resume_job with a result',
            $q$SELECT workflow.resume_job(J24, '{"r": 1}')$q$, '^ok: true$'),
        (27, 'mallory', 'resume_job with an error',
            $q$SELECT workflow.resume_job(J25, NULL, 'it failed')$q$, '^ok: true$'),
        (28, 'mallory', 'retry_job of the failed job',
            $q$SELECT workflow.retry_job(J25)$q$, '^ok: true$'),
        (29, 'mallory', 'drop_workflow',
            format($q$SELECT workflow.drop_workflow('shd_drop_%s')$q$, t), '^ok: $'),
        (30, 'mallory', 'drop_workflow of a workflow with a live job: 2BP01',
            format($q$SELECT workflow.drop_workflow('shd_esc2_%s')$q$, t), '^2BP01: '),
        (31, 'mallory', 'drop_workflow with force',
            format($q$SELECT workflow.drop_workflow('shd_esc2_%s', force => true)$q$, t), '^ok: $'),
        (32, 'mallory', 'schedule (pg_cron)',
            format($q$SELECT workflow.schedule('shd-%s', '0 3 * * *', 'shd_sql_%s', '{"by": "cron"}') > 0$q$, t, t), '^ok: true$'),
        (33, 'mallory', 'the schedules view',
            $q$SELECT string_agg(name, ',') FROM workflow.schedules$q$, format('^ok: shd-%s$', t)),
        (34, 'mallory', 'unschedule',
            format($q$SELECT workflow.unschedule('shd-%s')$q$, t), '^ok: $'),
        (35, 'mallory', 'the job_summary view',
            $q$SELECT count(*) > 0 FROM workflow.job_summary$q$, '^ok: true$'),
        (36, 'mallory', 'the runner_status view',
            $q$SELECT count(*) >= 0 FROM workflow.runner_status$q$, '^ok: true$'),
        (37, 'mallory', 'the failed_jobs view',
            $q$SELECT count(*) >= 0 FROM workflow.failed_jobs$q$, '^ok: true$'),
        (38, 'mallory', 'the slow_jobs view',
            $q$SELECT count(*) >= 0 FROM workflow.slow_jobs$q$, '^ok: true$'),
        (39, 'mallory', 'the tables',
            $q$SELECT (SELECT count(*) FROM workflow.workflows) + (SELECT count(*) FROM workflow.tasks)
                    + (SELECT count(*) FROM workflow.jobs) + (SELECT count(*) FROM workflow.task_runs)
                    + (SELECT count(*) FROM workflow.job_info) + (SELECT count(*) FROM workflow.runners)
                    + (SELECT count(*) FROM workflow.task_types) > 0$q$, '^ok: true$'),
        (40, 'mallory', 'requeue() outside a task: refused',
            $q$SELECT workflow.requeue()$q$, '^[0-9A-Z]{5}: '),
        (41, 'mallory', 'wait() outside a task: refused',
            $q$SELECT workflow.wait()$q$, '^[0-9A-Z]{5}: '),
        (42, 'mallory', 'add_info(info) outside a task: refused',
            $q$SELECT workflow.add_info('{"a": 1}'::jsonb)$q$, '^[0-9A-Z]{5}: '),
        (43, 'mallory', 'create_job to fail (runner protocol)',
            format($q$SELECT workflow.create_job('shd_sql_%s', '{"n": 2}')$q$, t), '^ok: \d+$'),
        (44, 'mallory', 'create_job, external (1)',
            format($q$SELECT workflow.create_job('shd_ext_%s', '{"x": 1}')$q$, t), '^ok: \d+$'),
        (45, 'mallory', 'create_job, external (2)',
            format($q$SELECT workflow.create_job('shd_ext_%s', '{"x": 2}')$q$, t), '^ok: \d+$'),
        (46, 'mallory', 'create_job, external (3)',
            format($q$SELECT workflow.create_job('shd_ext_%s', '{"x": 3}')$q$, t), '^ok: \d+$'),
        (47, 'mallory', 'create_job, external with a target (4)',
            format($q$SELECT workflow.create_job('shd_ext_%s', '{"x": 4}', target => 'tx-%s')$q$, t, t), '^ok: \d+$'),
        (48, 'mallory', 'create_job, external (5)',
            format($q$SELECT workflow.create_job('shd_ext_%s', '{"x": 5}')$q$, t), '^ok: \d+$'),
        (49, 'mallory', 'create_job, external in a domain',
            format($q$SELECT workflow.create_job('shd_ext_%s', '{"x": 6}', domain => 'dom-%s')$q$, t, t), '^ok: \d+$'),
        -- the runner protocol
        (50, 'mallory_w', 'register_runner',
            format($q$SELECT workflow.register_runner('shd-r-%s')$q$, t), '^ok: $'),
        (51, 'mallory_w', 'runner_active',
            format($q$SELECT workflow.runner_active('shd-r-%s')$q$, t), '^ok: $'),
        (52, 'mallory_w', 'next_jobs',
            $q$SELECT count(*) > 0 FROM workflow.next_jobs(0, 1000)$q$, '^ok: true$'),
        (53, 'mallory_w', 'next_jobs of a queue',
            format($q$SELECT count(*) FROM workflow.next_jobs(0, 1000, 'shd.x.%s')$q$, t), '^ok: 6$'),
        (54, 'mallory_w', 'run_job of a job with a target',
            format($q$SELECT (workflow.run_job(J14, 'shd-r-%s')).execution$q$, t), '^ok: running$'),
        (55, 'mallory_w', 'finish_job succeeded',
            format($q$SELECT (workflow.finish_job(J14, 'shd-r-%s', 'succeeded', '{"ok": 1}')).execution$q$, t), '^ok: succeeded$'),
        (56, 'mallory_w', 'finish_job again: the same answer',
            format($q$SELECT (workflow.finish_job(J14, 'shd-r-%s', 'succeeded', '{"ok": 1}')).execution$q$, t), '^ok: succeeded$'),
        (57, 'mallory_w', 'run_job of the job with the mallory_s search_path',
            format($q$SELECT (workflow.run_job(J12, 'shd-r-%s')).execution$q$, t), '^ok: running$'),
        (58, 'mallory_w', 'finish_job failed',
            format($q$SELECT (workflow.finish_job(J12, 'shd-r-%s', 'failed', '{"message": "no"}')).execution$q$, t), '^ok: failed$'),
        (59, 'mallory_w', 'run_job',
            format($q$SELECT (workflow.run_job(J43, 'shd-r-%s')).execution$q$, t), '^ok: running$'),
        (60, 'mallory_w', 'finish_job canceled',
            format($q$SELECT (workflow.finish_job(J43, 'shd-r-%s', 'canceled')).execution$q$, t), '^ok: canceled$'),
        (61, 'mallory_w', 'finish_job of a job that is not running: 55000',
            format($q$SELECT (workflow.finish_job(J43, 'shd-r-other', 'succeeded')).execution$q$, t), '^55000: '),
        -- the external task protocol
        (62, 'mallory_w', 'poll_tasks',
            format($q$SELECT count(*) FROM workflow.poll_tasks('shd.x.%s', 'shd-w-%s', 10)$q$, t, t), '^ok: 5$'),
        (63, 'mallory_w', 'poll_tasks in a domain',
            format($q$SELECT count(*) FROM workflow.poll_tasks('shd.x.%s', 'shd-w-%s', 10, '0', 'dom-%s')$q$, t, t, t), '^ok: 1$'),
        (64, 'mallory_w', 'poll_tasks, long poll with nothing to hand out',
            format($q$SELECT count(*) FROM workflow.poll_tasks('shd.none.%s', 'shd-w-%s', 1, '10 ms')$q$, t, t), '^ok: 0$'),
        (65, 'mallory_w', 'extend_task',
            $q$SELECT workflow.extend_task(J44, L44, '1 min') > now()$q$, '^ok: true$'),
        (66, 'mallory_w', 'complete_task',
            $q$SELECT workflow.complete_task(J44, L44, '{"done": 1}')$q$, '^ok: true$'),
        (67, 'mallory_w', 'complete_task again: false',
            $q$SELECT workflow.complete_task(J44, L44, '{"done": 1}')$q$, '^ok: false$'),
        (68, 'mallory_w', 'complete_tasks',
            $q$SELECT string_agg(recorded::text, ',') FROM workflow.complete_tasks(ARRAY[J45], ARRAY[L45], ARRAY['{"b": 2}'::jsonb])$q$, '^ok: true$'),
        (69, 'mallory_w', 'fail_task, retryable',
            $q$SELECT workflow.fail_task(J46, L46, 'boom', true)$q$, '^ok: true$'),
        (70, 'mallory_w', 'requeue_task of the job with a target',
            $q$SELECT workflow.requeue_task(J47, L47, '0')$q$, '^ok: true$'),
        (71, 'mallory_w', 'fail_task, not retryable: the onerror chain',
            $q$SELECT workflow.fail_task(J48, L48, 'boom', false)$q$, '^ok: true$'),
        (72, 'mallory_w', 'poll_tasks again',
            format($q$SELECT count(*) FROM workflow.poll_tasks('shd.x.%s', 'shd-w-%s', 10)$q$, t, t), '^ok: [12]$'),
        (73, 'mallory_w', 'complete_task of the job with a target',
            $q$SELECT workflow.complete_task(J47, L47, '{"t": 1}')$q$, '^ok: true$'),
        (74, 'mallory_w', 'complete_task with a stale lease: 55000',
            $q$SELECT workflow.complete_task(J47, 1, '{"t": 1}')$q$, '^55000: '),
        (75, 'mallory_w', 'fail_task in a domain',
            $q$SELECT workflow.fail_task(J49, L49, 'boom', false)$q$, '^ok: true$'),
        -- the administrator's functions
        (76, 'mallory_a', 'pause_task_type',
            format($q$SELECT workflow.pause_task_type('shd.x.%s')$q$, t), '^ok: true$'),
        (77, 'mallory_w', 'poll_tasks of a paused task type',
            format($q$SELECT count(*) FROM workflow.poll_tasks('shd.x.%s', 'shd-w-%s', 10)$q$, t, t), '^ok: 0$'),
        (78, 'mallory_a', 'resume_task_type',
            format($q$SELECT workflow.resume_task_type('shd.x.%s')$q$, t), '^ok: true$'),
        (79, 'mallory_a', 'inactive_runners',
            $q$SELECT count(*) >= 0 FROM workflow.inactive_runners()$q$, '^ok: true$'),
        (80, 'mallory_a', 'stale_jobs',
            $q$SELECT count(*) >= 0 FROM workflow.stale_jobs()$q$, '^ok: true$'),
        (81, 'mallory_a', 'job_context',
            $q$SELECT workflow.job_context(j)->'job'->>'id' FROM workflow.jobs j WHERE j.id = J44$q$, '^ok: J44$'),
        (82, 'mallory_a', 'get_job of mallory''s job',
            $q$SELECT workflow.get_job(J12)->>'created_by'$q$, '^ok: mallory$'),
        (83, 'mallory_a', 'retry_job of mallory''s job',
            $q$SELECT workflow.retry_job(J12)$q$, '^ok: true$'),
        (84, 'mallory_a', 'cancel_job of mallory''s job',
            $q$SELECT workflow.cancel_job(J16, 'by the admin')$q$, '^ok: true$'),
        (85, 'mallory_a', 'create_workflow, a new version of mallory''s workflow',
            format($q$SELECT workflow.create_workflow('{"name": "shd_wait_%s", "chain": [{"name": "w", "wait": "signal"}]}')$q$, t), '^ok: 2$'),
        (86, 'mallory_a', 'the views',
            $q$SELECT (SELECT count(*) FROM workflow.job_summary) + (SELECT count(*) FROM workflow.runner_status)
                    + (SELECT count(*) FROM workflow.failed_jobs) + (SELECT count(*) FROM workflow.slow_jobs)
                    + (SELECT count(*) FROM workflow.schedules) > 0$q$, '^ok: true$'),
        (87, 'mallory', 'drop_workflow of the external workflow with force',
            format($q$SELECT workflow.drop_workflow('shd_ext_%s', force => true)$q$, t), '^ok: $'),
        -- pause_job (runner protocol), then resume_job
        (88, 'mallory', 'create_job to pause (runner protocol)',
            format($q$SELECT workflow.create_job('shd_sql_%s', '{"n": 3}')$q$, t), '^ok: \d+$'),
        (89, 'mallory_w', 'run_job of the job to pause',
            format($q$SELECT (workflow.run_job(J88, 'shd-r-%s')).execution$q$, t), '^ok: running$'),
        (90, 'mallory_w', 'pause_job',
            format($q$SELECT (workflow.pause_job(J88, 'shd-r-%s')).execution$q$, t), '^ok: waiting$'),
        (91, 'mallory', 'resume_job of the paused job',
            $q$SELECT workflow.resume_job(J88)$q$, '^ok: true$'),
        -- diagrams
        (92, 'mallory', 'diagram',
            format($q$SELECT split_part(workflow.diagram('shd_sql_%s', 1, 'dot'), E'\n', 1)$q$, t), '^ok: digraph workflow \{$'),
        (93, 'mallory', 'job_diagram',
            $q$SELECT strpos(workflow.job_diagram(J88), '<br/>succeeded') > 0$q$, '^ok: true$'),
        (94, 'mallory_a', 'job_diagram of mallory''s job',
            $q$SELECT split_part(workflow.job_diagram(J12, 'dot'), E'\n', 1)$q$, '^ok: digraph workflow \{$'),
        (95, 'mallory', 'job_diagram of a job that does not exist: 42704',
            $q$SELECT workflow.job_diagram(-1)$q$, '^42704: '),
        -- signals: none of mallory's jobs waits on the key
        (96, 'mallory', 'signal',
            format($q$SELECT workflow.signal('shd-key-%s', '{"x": 1}')$q$, t), '^ok: 0$'),
        -- erasure (the job succeeded at call 55)
        (97, 'mallory', 'redact_job of its own job: 42501',
            $q$SELECT workflow.redact_job(J14)$q$, '^42501: '),
        (98, 'mallory_a', 'redact_job of mallory''s finished job',
            $q$SELECT workflow.redact_job(J14)$q$, '^ok: 1$'),
        (99, 'mallory_a', 'delete_job of mallory''s finished job',
            $q$SELECT workflow.delete_job(J14)$q$, '^ok: 1$'),
        (100, 'mallory_a', 'delete_job of a job that is not finished: 55000',
            $q$SELECT workflow.delete_job(J88)$q$, '^55000: '),
        -- queues (administrators only)
        (101, 'mallory', 'create_queue: 42501',
            format($q$SELECT workflow.create_queue('shd-q-%s', 2)$q$, t), '^42501: '),
        (102, 'mallory_a', 'create_queue',
            format($q$SELECT workflow.create_queue('shd-q-%s', 2, 10, '1 s', 1)$q$, t), '^ok: true$'),
        (103, 'mallory_a', 'alter_queue',
            format($q$SELECT workflow.alter_queue('shd-q-%s', concurrency => 0)$q$, t), '^ok: true$'),
        (104, 'mallory_a', 'drop_queue',
            format($q$SELECT workflow.drop_queue('shd-q-%s')$q$, t), '^ok: true$'),
        -- bulk enqueue, with targets and idempotency keys (one given twice)
        (105, 'mallory', 'create_jobs with targets and idempotency keys (one key twice: one job)',
            format($q$SELECT count(DISTINCT c.id) FROM workflow.create_jobs('shd_sql_%s',
                      ARRAY['{"n": 5}', '{"n": 6}', '{"n": 5}']::jsonb[], ARRAY['tb-%s', NULL, 'tb-%s'],
                      idempotency_keys => ARRAY['bk-%s', NULL, 'bk-%s']) AS c(id)$q$, t, t, t, t, t), '^ok: 2$')
        ) AS v(n, role, label, sql, expected)
        ORDER BY n
    LOOP
        -- fill in the ids (Jn: the job made by call n) and leases (Ln)
        c.sql := regexp_replace(c.sql, '([JL])(\d+)', '<\1\2>', 'g');
        c.expected := regexp_replace(c.expected, 'J(\d+)', '<J\1>', 'g');
        FOR i IN 1 .. coalesce(array_length(steps, 1), 0) LOOP
            IF pg_temp.id(steps[i]) IS NOT NULL THEN
                c.sql := replace(c.sql, format('<J%s>', i), pg_temp.id(steps[i])::text);
                c.sql := replace(c.sql, format('<L%s>', i), coalesce(leases[i], 0)::text);
                c.expected := replace(c.expected, format('<J%s>', i), pg_temp.id(steps[i])::text);
            END IF;
        END LOOP;
        -- the waiting jobs (what a runner does with a wait task)
        IF c.n = 26 THEN
            UPDATE workflow.jobs SET execution = 'waiting', run_at = 'infinity', started_at = now()
             WHERE id IN (pg_temp.id(steps[24]), pg_temp.id(steps[25]));
        END IF;
        SELECT x.got, x.hits INTO got, h FROM pg_temp.call(c.role, p_path, c.sql) x;
        steps := steps || got;
        -- the last lease of each job (kept once the job has none)
        FOR i IN 1 .. array_length(steps, 1) LOOP
            leases[i] := coalesce(pg_temp.lease(pg_temp.id(steps[i])), leases[i]);
        END LOOP;
        o_kind := 'call';
        o_label := format('%s: %s: %s', p_tag, c.role, c.label);
        o_expected := c.expected;
        o_got := got;
        RETURN NEXT;
        o_kind := 'hits';
        o_label := format('%s: %s: %s: no shadow ran as another role', p_tag, c.role, c.label);
        o_got := h::text;
        o_expected := '0';
        RETURN NEXT;
    END LOOP;
END
$$;

-- p1: mallory_s before pg_catalog
SELECT pg_temp.hits() AS hits_before \gset
SELECT CASE o_kind WHEN 'call' THEN matches(o_got, o_expected, o_label)
                   ELSE is(o_got, o_expected, o_label) END
  FROM pg_temp.scenario('p1', 'mallory_s, pg_catalog, public');
SELECT is(pg_temp.hits() - :hits_before, 0::bigint, 'p1: search_path "mallory_s, pg_catalog, public": no shadow ran as another role');

-- p2: pg_catalog not listed (searched first, implicitly; pg_temp too)
SELECT pg_temp.hits() AS hits_before \gset
SELECT CASE o_kind WHEN 'call' THEN matches(o_got, o_expected, o_label)
                   ELSE is(o_got, o_expected, o_label) END
  FROM pg_temp.scenario('p2', 'mallory_s, public');
SELECT is(pg_temp.hits() - :hits_before, 0::bigint, 'p2: search_path "mallory_s, public": no shadow ran as another role');

-- p3: pg_temp first (mallory's temporary views before the catalogs)
SELECT pg_temp.hits() AS hits_before \gset
SELECT CASE o_kind WHEN 'call' THEN matches(o_got, o_expected, o_label)
                   ELSE is(o_got, o_expected, o_label) END
  FROM pg_temp.scenario('p3', 'pg_temp, mallory_s, pg_catalog, public');
SELECT is(pg_temp.hits() - :hits_before, 0::bigint, 'p3: search_path "pg_temp, mallory_s, pg_catalog, public": no shadow ran as another role');

-------------------------------------------------------------------------------
-- (3) At the end
-------------------------------------------------------------------------------

SELECT is((SELECT last_value FROM mallory_s.hits), 1::bigint,
          'mallory_s.hits: never advanced since the harness reset it');
SELECT is((SELECT is_called FROM mallory_s.hits), false,
          'mallory_s.hits: no shadow ever ran as a role other than the mallory roles');
SELECT is(ARRAY(SELECT rolname::text FROM pg_catalog.pg_roles
                 WHERE rolname IN ('mallory', 'mallory_w', 'mallory_a') AND (rolsuper OR rolcreaterole OR rolcreatedb)
                 ORDER BY 1),
          '{}'::text[], 'mallory, mallory_w and mallory_a are still not superusers');
-- a definition's search_path is accepted and stored, for the tasks, which
-- run as the job's creator
SELECT is(ARRAY(SELECT w.name || ': ' || w.search_path FROM workflow.workflows w
                 WHERE w.name LIKE 'shd\_esc%' ORDER BY w.name),
          '{"shd_esc3_p1: pg_temp, mallory_s, pg_catalog, public","shd_esc3_p2: pg_temp, mallory_s, pg_catalog, public","shd_esc3_p3: pg_temp, mallory_s, pg_catalog, public","shd_esc_p1: mallory_s, pg_catalog","shd_esc_p2: mallory_s, pg_catalog","shd_esc_p3: mallory_s, pg_catalog"}',
          'the workflows whose definition names mallory_s are stored with that search_path (shd_esc2_* were dropped)');
SELECT is(ARRAY(SELECT format('%s %s %s', j.workflow, j.created_by, j.execution) FROM workflow.jobs j
                 WHERE j.workflow LIKE 'shd\_esc\_%' ORDER BY j.workflow),
          '{"shd_esc_p1 mallory queued","shd_esc_p2 mallory queued","shd_esc_p3 mallory queued"}',
          'the job of the workflow with the mallory_s search_path is stored, as mallory''s (retried by the administrator)');

-------------------------------------------------------------------------------
-- (4) Statically
-------------------------------------------------------------------------------

-- the calls above cover every function the three roles may call (but the
-- "_" helpers granted to workflow_user, SECURITY INVOKER): a new one must
-- be added to pg_temp.scenario
SELECT is(ARRAY(SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p
                 CROSS JOIN (VALUES ('workflow_user'), ('workflow_worker'), ('workflow_admin')) AS r(rolname)
                 WHERE p.pronamespace = 'workflow'::regnamespace AND p.proname !~ '^_'
                   AND has_function_privilege(r.rolname, p.oid, 'EXECUTE')
                EXCEPT
                SELECT unnest('{create_workflow,drop_workflow,create_job,create_jobs,get_job,cancel_job,resume_job,retry_job,
                                add_info,job_info,schedule,unschedule,requeue,wait,next_jobs,run_job,finish_job,pause_job,
                                register_runner,runner_active,poll_tasks,complete_task,complete_tasks,fail_task,
                                extend_task,requeue_task,pause_task_type,resume_task_type,inactive_runners,
                                stale_jobs,job_context,diagram,job_diagram,signal,delete_job,redact_job,
                                create_queue,alter_queue,drop_queue}'::text[])
                ORDER BY 1),
          '{}'::text[], 'every function granted to workflow_user, workflow_worker or workflow_admin is called above');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'workflow'::regnamespace AND p.prosecdef
       AND p.proname !~ '^_'
       AND NOT has_function_privilege('workflow_user', p.oid, 'EXECUTE')
       AND NOT has_function_privilege('workflow_worker', p.oid, 'EXECUTE')
       AND NOT has_function_privilege('workflow_admin', p.oid, 'EXECUTE')
$$, 'every SECURITY DEFINER function is granted to one of the roles, or is an "_" implementation reached through them');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'workflow'::regnamespace AND p.prosecdef
       AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
$$, 'every SECURITY DEFINER function of the extension pins search_path = pg_catalog, pg_temp');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'workflow'::regnamespace
       AND p.prosrc ~* '(set_config\s*\(\s*''search_path''|\mset\s+(local\s+|session\s+)?search_path\M)'
$$, 'no function of the extension changes search_path in its body');

SELECT * FROM finish();
ROLLBACK;
