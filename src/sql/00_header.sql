/* Install script of the workflow extension: job queues and multi-step
 * workflows run inside PostgreSQL.  See README.md for the user's view and
 * src/README.md for the design of the state machine and the claim path.
 *
 * Built by make from the sources in src/sql/ (src/sql/README.md): edit
 * those, never the generated workflow--<version>.sql.
 *
 * Every object is schema-qualified; the script pins search_path so nothing
 * planted in public or pg_temp before CREATE EXTENSION can be picked up.
 *
 * search_path of functions: every function a role may call, and every
 * SECURITY DEFINER function, pins search_path = pg_catalog, pg_temp.  The
 * internal helpers of the state machine and of the workers (names starting
 * with "_", granted to nobody) do not: they are only called by those
 * functions or by the background workers, whose sessions pin the same
 * search_path, so they run under it anyway -- and a SET clause costs a
 * GUC save and restore at every call on the hot path.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION workflow" to load this file. \quit

SET LOCAL search_path = pg_catalog, pg_temp;

-- The schema must be ours: one created beforehand by an ordinary role would
-- stay that role's, and it could swap objects under the functions below.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                 JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                WHERE n.nspname = 'workflow' AND NOT r.rolsuper) THEN
        RAISE EXCEPTION 'schema "workflow" already exists and is owned by a role that is not a superuser'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop or rename that schema, then run CREATE EXTENSION workflow again.';
    END IF;
END
$$;
