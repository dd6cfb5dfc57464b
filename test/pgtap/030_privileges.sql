-- 030_privileges.sql: nothing of the extension is granted to PUBLIC
-- (README "Security"): a role without a grant gets SQLSTATE 42501 from every
-- function of schema workflow and from every table, view and sequence.
--
-- The objects are found in the catalog, so a function or table added later
-- is covered without editing this file (the plan is computed).  Each object
-- is tried twice: by a fresh role with no grant at all (stopped at the
-- schema), and by the same role once it has USAGE on the schema (stopped by
-- the object's own privileges).  The role and the grant are rolled back.

BEGIN;

SET LOCAL search_path = public, pg_catalog;

CREATE TEMP VIEW wf_functions AS
SELECT p.oid, p.oid::regprocedure::text AS sig, p.prokind
  FROM pg_proc p WHERE p.pronamespace = 'workflow'::regnamespace;

CREATE TEMP VIEW wf_relations AS
SELECT c.oid, c.oid::regclass::text AS name, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'workflow'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S');

SELECT plan(9 + 2 * (SELECT count(*)::int FROM wf_functions)
              + 2 * (SELECT count(*)::int FROM wf_relations));

CREATE ROLE wf_test_nobody NOLOGIN;

-- Run p_sql as p_role; its SQLSTATE, or 'WF000' when it did not fail.
-- The role is set inside a subtransaction that is always rolled back, so
-- the caller is back to itself afterwards.
CREATE FUNCTION pg_temp.sqlstate_as(p_role name, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    EXECUTE p_sql;
    RAISE EXCEPTION 'no error' USING ERRCODE = 'WF000';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- A call of a function with NULL for every argument.  Each NULL is a
-- sub-select, not a constant: the planner folds a STRICT function called
-- with a constant NULL to NULL without ever checking EXECUTE.
CREATE FUNCTION pg_temp.call_sql(p_fn oid)
RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN p.prokind = 'p' THEN 'CALL ' ELSE 'SELECT ' END
           || quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '('
           || coalesce((SELECT string_agg('(SELECT NULL::' || format_type(t, NULL) || ')', ', ' ORDER BY o)
                          FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)), '')
           || ')'
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.oid = p_fn
$$;

-- A read of a relation.
CREATE FUNCTION pg_temp.read_sql(p_rel oid)
RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN c.relkind = 'S' THEN format('SELECT nextval(%L)', c.oid::regclass::text)
                ELSE format('SELECT * FROM %s LIMIT 1', c.oid::regclass) END
      FROM pg_class c WHERE c.oid = p_rel
$$;

-------------------------------------------------------------------------------
-- The test harness itself
-------------------------------------------------------------------------------

SELECT is(pg_temp.sqlstate_as('wf_test_nobody', 'SELECT 1'), 'WF000', 'harness: a harmless statement works');
SELECT is(pg_temp.sqlstate_as('wf_test_nobody',
                              $$SELECT CASE WHEN current_user = 'wf_test_nobody' THEN 1/0 END$$),
          '22012', 'harness: the statement runs as the role');
SELECT is(current_user::text, session_user::text, 'harness: the caller is itself again afterwards');
SELECT cmp_ok((SELECT count(*)::int FROM wf_functions), '>=', 20, 'harness: the functions were found');

-------------------------------------------------------------------------------
-- The catalog: no ACL entry for PUBLIC, and no default (NULL) ACL
-------------------------------------------------------------------------------

SELECT is(ARRAY(SELECT f.sig FROM wf_functions f JOIN pg_proc p ON p.oid = f.oid
                 WHERE p.proacl IS NULL
                    OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0)
                 ORDER BY 1),
          '{}'::text[], 'catalog: no function is executable by PUBLIC');
SELECT is(ARRAY(SELECT r.name FROM wf_relations r JOIN pg_class c ON c.oid = r.oid
                 WHERE c.relacl IS NULL
                    OR EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0)
                 ORDER BY 1),
          '{}'::text[], 'catalog: no table, view or sequence is granted to PUBLIC');
SELECT ok(NOT has_schema_privilege('wf_test_nobody', 'workflow', 'USAGE')
          AND NOT has_schema_privilege('wf_test_nobody', 'workflow', 'CREATE'),
          'catalog: a role without a grant has no privilege on schema workflow');
SELECT is(ARRAY(SELECT f.sig FROM wf_functions f
                 WHERE has_function_privilege('wf_test_nobody', f.oid, 'EXECUTE') ORDER BY 1),
          '{}'::text[], 'catalog: a role without a grant may execute no function');
SELECT is(ARRAY(SELECT r.name FROM wf_relations r
                 WHERE CASE WHEN r.relkind = 'S'
                            THEN has_sequence_privilege('wf_test_nobody', r.oid, 'USAGE, SELECT, UPDATE')
                            ELSE has_table_privilege('wf_test_nobody', r.oid,
                                     'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
                       END ORDER BY 1),
          '{}'::text[], 'catalog: a role without a grant has no privilege on any relation');

-------------------------------------------------------------------------------
-- Real calls by a role without any grant: 42501
-------------------------------------------------------------------------------

SELECT is(pg_temp.sqlstate_as('wf_test_nobody', pg_temp.call_sql(f.oid)), '42501',
          'no grant: ' || f.sig)
  FROM wf_functions f ORDER BY f.sig;
SELECT is(pg_temp.sqlstate_as('wf_test_nobody', pg_temp.read_sql(r.oid)), '42501',
          'no grant: read ' || r.name)
  FROM wf_relations r ORDER BY r.name;

-------------------------------------------------------------------------------
-- With USAGE on the schema only, the objects themselves still refuse: 42501
-------------------------------------------------------------------------------

GRANT USAGE ON SCHEMA workflow TO wf_test_nobody;

SELECT is(pg_temp.sqlstate_as('wf_test_nobody', pg_temp.call_sql(f.oid)), '42501',
          'schema usage only: ' || f.sig)
  FROM wf_functions f ORDER BY f.sig;
SELECT is(pg_temp.sqlstate_as('wf_test_nobody', pg_temp.read_sql(r.oid)), '42501',
          'schema usage only: read ' || r.name)
  FROM wf_relations r ORDER BY r.name;

SELECT * FROM finish();
ROLLBACK;
