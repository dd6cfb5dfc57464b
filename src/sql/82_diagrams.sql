-- Workflow diagrams: Mermaid and Graphviz
-------------------------------------------------------------------------------
--
-- workflow.diagram() draws a version of a workflow, workflow.job_diagram()
-- the same with the state of each node in one job.  Both render through
-- workflow._diagram(definition, states, format), a pure function of the
-- definition's JSON and of a map of node states.
--
-- What is drawn.  A start and an end node.  A task: a box (SQL task), a
-- parallelogram with its task type (external task) or a hexagon with its
-- timer or "wait for signal" (wait task).  A parallel entry: a fork
-- (trapezium), one path per branch whose first edge is labelled with the
-- branch name, and a join (inverted trapezium, "end of <name>").  A
-- switch: a decision (rhombus), one path per case labelled with the case
-- value (and "default"), and the same join.  A sub-workflow: a subroutine
-- (double box, "<name>: <workflow>").  A foreach: a node with its
-- concurrency followed by its do chain in a subgraph of its own, or, when
-- each item is a workflow, a single subroutine node.  When there are
-- onerror or oncancel chains, the main chain is a subgraph, and each of
-- them another one, reached by a dashed edge ("on error", "on cancel")
-- from the main chain's last node (dot: from the border of its cluster).
--
-- Node ids are n<k> and subgraph ids s<k> (Mermaid) or cluster_<k> (dot),
-- numbered in the order of the definition, so that any name is safe: names,
-- branch names and case values are in labels only, escaped for the format.
-- Branches and cases are drawn in the order jsonb keeps the keys of an
-- object (shorter keys first, then by their bytes).  The output depends on
-- the arguments alone.
--
-- Node paths, the keys of the states: "<phase>/<entry name>", where phase
-- is the chain at the top of the definition that holds the entry (chain,
-- onerror or oncancel), at whatever depth the entry is (entry names are
-- unique in a definition): "chain/reserve", "chain/check_stock" for a task
-- in a branch of a parallel entry of the chain, "onerror/undo".
--
-- A state is a string ("succeeded") or an object {"state": "running",
-- "label": "3 of 10 succeeded, 2 running"}: its label is the node's last
-- line, and a state of a job or of a task run (queued, running, waiting,
-- requeued, succeeded, failed, canceled) colours the node.
-------------------------------------------------------------------------------

-- The format argument of the diagram functions.
CREATE OR REPLACE FUNCTION workflow._diagram_check_format(fmt text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF fmt IS NULL THEN
        RAISE EXCEPTION 'diagram format must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF fmt NOT IN ('mermaid', 'dot') THEN
        RAISE EXCEPTION 'diagram format must be "mermaid" or "dot", not "%"', left(fmt, 200)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION workflow._diagram_check_format(text) IS
    'internal: raise the error for a diagram format other than mermaid or dot';

-- Text for a label of the format.  Control characters become spaces.  dot:
-- a quoted string, where a backslash starts an escape of its own.  Mermaid:
-- entity codes (#quot;) for every character that could end the quoted
-- label, start an entity, HTML, a Markdown string or a comment; "#"
-- first, since the codes themselves use it.
CREATE OR REPLACE FUNCTION workflow._diagram_text(t text, fmt text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s   text := regexp_replace(t, '[[:cntrl:]]', ' ', 'g');
BEGIN
    IF fmt = 'dot' THEN
        RETURN replace(replace(s, '\', '\\'), '"', '\"');
    END IF;
    s := replace(s, '#', '#35;');
    s := replace(s, '&', '#amp;');
    s := replace(s, '"', '#quot;');
    s := replace(s, '<', '#lt;');
    s := replace(s, '>', '#gt;');
    s := replace(s, '|', '#124;');
    s := replace(s, '`', '#96;');
    s := replace(s, '%', '#37;');
    RETURN s;
END
$$;
COMMENT ON FUNCTION workflow._diagram_text(text, text) IS
    'internal: escape a label of a diagram for Mermaid or dot';

-- The colours of a state: fill and border.  NULL for a state that is none
-- of a job's or a task run's.
CREATE OR REPLACE FUNCTION workflow._diagram_palette(state text, OUT fill text, OUT stroke text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    CASE state
        WHEN 'queued', 'requeued' THEN fill := '#f1f3f5'; stroke := '#868e96';
        WHEN 'running' THEN fill := '#d0ebff'; stroke := '#1971c2';
        WHEN 'waiting' THEN fill := '#fff3bf'; stroke := '#e67700';
        WHEN 'succeeded' THEN fill := '#d3f9d8'; stroke := '#2b8a3e';
        WHEN 'failed' THEN fill := '#ffe3e3'; stroke := '#c92a2a';
        WHEN 'canceled' THEN fill := '#e9ecef'; stroke := '#495057';
        ELSE NULL;
    END CASE;
END
$$;
COMMENT ON FUNCTION workflow._diagram_palette(text) IS
    'internal: fill and border colour of a node in a state (NULL for an unknown state)';

-- Append one node to a diagram: its line in nodes, the class of its state
-- (a known state) in classes.  label holds its lines; the state's label,
-- if any, is added as the last.
CREATE OR REPLACE FUNCTION workflow._diagram_node(fmt text, id text, shape text, label text[], state jsonb,
                                                  depth integer, INOUT nodes text[], INOUT classes text[])
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cls     text;
    txt     text;
    body    text;
    attrs   text;
    styles  text[] := '{}';
    p       record;
BEGIN
    IF jsonb_typeof(state) = 'object' THEN
        cls := state ->> 'state';
        txt := coalesce(state ->> 'label', cls);
    ELSIF jsonb_typeof(state) <> 'null' THEN
        cls := state #>> '{}';
        txt := cls;
    END IF;
    IF txt IS NOT NULL THEN
        label := label || txt;
    END IF;
    p := workflow._diagram_palette(cls);
    IF p.fill IS NULL THEN
        cls := NULL;
    ELSIF NOT cls = ANY (classes) THEN
        classes := classes || cls;
    END IF;
    body := array_to_string(ARRAY(SELECT workflow._diagram_text(l.line, fmt)
                                    FROM unnest(label) WITH ORDINALITY AS l(line, o)
                                   WHERE l.line IS NOT NULL
                                   ORDER BY l.o),
                            CASE fmt WHEN 'dot' THEN '\n' ELSE '<br/>' END);
    IF fmt = 'mermaid' THEN
        nodes := nodes || (repeat('    ', depth) || id
                           || CASE shape
                                  WHEN 'terminal' THEN '(["' || body || '"])'
                                  WHEN 'external' THEN '[/"' || body || '"/]'
                                  WHEN 'wait' THEN '{{"' || body || '"}}'
                                  WHEN 'fork' THEN '[/"' || body || '"\]'
                                  WHEN 'join' THEN '[\"' || body || '"/]'
                                  WHEN 'decision' THEN '{"' || body || '"}'
                                  WHEN 'subworkflow' THEN '[["' || body || '"]]'
                                  WHEN 'foreach' THEN '("' || body || '")'
                                  ELSE '["' || body || '"]'
                              END
                           || coalesce(':::' || cls, ''));
        RETURN;
    END IF;
    attrs := CASE shape
                 WHEN 'terminal' THEN 'shape=oval'
                 WHEN 'external' THEN 'shape=parallelogram'
                 WHEN 'wait' THEN 'shape=hexagon'
                 WHEN 'fork' THEN 'shape=trapezium'
                 WHEN 'join' THEN 'shape=invtrapezium'
                 WHEN 'decision' THEN 'shape=diamond'
                 WHEN 'subworkflow' THEN 'shape=box, peripheries=2'
                 ELSE 'shape=box'
             END;
    IF shape = 'foreach' THEN
        styles := styles || 'rounded'::text;
    END IF;
    IF cls IS NOT NULL THEN
        styles := styles || 'filled'::text;
        IF cls = 'canceled' THEN
            styles := styles || 'dashed'::text;
        END IF;
        attrs := attrs || pg_catalog.format(', fillcolor="%s", color="%s"', p.fill, p.stroke);
    END IF;
    IF cardinality(styles) > 0 THEN
        attrs := attrs || ', style="' || array_to_string(styles, ',') || '"';
    END IF;
    nodes := nodes || pg_catalog.format('%s%s [label="%s", %s];', repeat('    ', depth), id, body, attrs);
END
$$;
COMMENT ON FUNCTION workflow._diagram_node(text, text, text, text[], jsonb, integer, text[], text[]) IS
    'internal: add a node of a diagram, with its state';

-- An edge of a diagram, optionally labelled and dashed.  ltail (dot
-- only): the cluster of from_id where the edge is clipped, so that it
-- leaves the cluster as a whole.  (Mermaid can start an edge at a
-- subgraph, but its layout then puts the target beside the subgraph, not
-- below.)
CREATE OR REPLACE FUNCTION workflow._diagram_edge(fmt text, from_id text, to_id text, label text,
                                                  dashed boolean DEFAULT false, ltail text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    attrs   text[] := '{}';
BEGIN
    IF fmt = 'mermaid' THEN
        RETURN '    ' || from_id
               || CASE WHEN dashed THEN ' -.->' ELSE ' -->' END
               || coalesce('|"' || workflow._diagram_text(label, fmt) || '"|', '')
               || ' ' || to_id;
    END IF;
    IF label IS NOT NULL THEN
        attrs := attrs || ('label="' || workflow._diagram_text(label, fmt) || '"');
    END IF;
    IF dashed THEN
        attrs := attrs || 'style=dashed'::text;
    END IF;
    IF ltail IS NOT NULL THEN
        attrs := attrs || ('ltail=' || ltail);
    END IF;
    RETURN '    ' || from_id || ' -> ' || to_id
           || CASE WHEN cardinality(attrs) > 0 THEN ' [' || array_to_string(attrs, ', ') || ']' ELSE '' END
           || ';';
END
$$;
COMMENT ON FUNCTION workflow._diagram_edge(text, text, text, text, boolean, text) IS
    'internal: an edge of a diagram';

-- The first line of a subgraph with its title (the caller closes it).
CREATE OR REPLACE FUNCTION workflow._diagram_subgraph(fmt text, id text, title text, depth integer)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF fmt = 'mermaid' THEN
        RETURN ARRAY[repeat('    ', depth) || 'subgraph ' || id || '["' || workflow._diagram_text(title, fmt) || '"]'];
    END IF;
    RETURN ARRAY[repeat('    ', depth) || 'subgraph ' || id || ' {',
                 repeat('    ', depth + 1) || 'label="' || workflow._diagram_text(title, fmt) || '";'];
END
$$;
COMMENT ON FUNCTION workflow._diagram_subgraph(text, text, text, integer) IS
    'internal: the opening lines of a subgraph of a diagram';

-- Draw one chain (an array of entries) of phase `phase': its nodes are
-- appended to nodes (indented by depth), its edges to edges, the classes of
-- their states to classes; n is the last number used for an id.
-- first_id / last_id: where the chain is entered and left (NULL for an
-- empty chain).
CREATE OR REPLACE FUNCTION workflow._diagram_chain(entries jsonb, phase text, states jsonb, fmt text, depth integer,
                                                   INOUT n integer, INOUT nodes text[], INOUT edges text[],
                                                   INOUT classes text[], OUT first_id text, OUT last_id text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e       jsonb;
    ename   text;
    path    text;
    f       text;       -- the entry's first node
    l       text;       -- and its last
    j       text;       -- the join of a parallel or switch entry
    arms    jsonb;      -- its branches or cases: [[label, chain], ...]
    arm     jsonb;
    sub     text;
    pos     integer;
    version text;
    second  text;
    r       record;
BEGIN
    IF jsonb_typeof(entries) IS DISTINCT FROM 'array' THEN
        RETURN;
    END IF;
    FOR e IN SELECT a.x FROM jsonb_array_elements(entries) WITH ORDINALITY AS a(x, o) ORDER BY a.o LOOP
        IF jsonb_typeof(e) <> 'object' THEN
            e := jsonb_build_object('name', e::text);
        END IF;
        ename := e ->> 'name';
        path := phase || '/' || ename;
        n := n + 1;
        f := 'n' || n;
        l := f;
        IF last_id IS NULL THEN
            first_id := f;
        ELSE
            edges := edges || workflow._diagram_edge(fmt, last_id, f, NULL);
        END IF;

        IF e ? 'parallel' OR e ? 'switch' THEN
            n := n + 1;
            j := 'n' || n;
            IF e ? 'parallel' THEN
                SELECT * INTO nodes, classes
                  FROM workflow._diagram_node(fmt, f, 'fork',
                                              ARRAY[ename, 'parallel' || CASE WHEN e -> 'fail_fast' = 'true'
                                                                             THEN ', fail fast' ELSE '' END],
                                              states -> path, depth, nodes, classes);
                arms := coalesce((SELECT jsonb_agg(jsonb_build_array(b.key, b.value) ORDER BY b.o)
                                    FROM jsonb_each(CASE WHEN jsonb_typeof(e -> 'parallel') = 'object'
                                                         THEN e -> 'parallel' ELSE '{}' END)
                                         WITH ORDINALITY AS b(key, value, o)),
                                 '[]');
            ELSE
                SELECT * INTO nodes, classes
                  FROM workflow._diagram_node(fmt, f, 'decision', ARRAY[ename, 'switch'],
                                              states -> path, depth, nodes, classes);
                arms := coalesce((SELECT jsonb_agg(jsonb_build_array(c.key, c.value) ORDER BY c.o)
                                    FROM jsonb_each(CASE WHEN jsonb_typeof(e -> 'cases') = 'object'
                                                         THEN e -> 'cases' ELSE '{}' END)
                                         WITH ORDINALITY AS c(key, value, o)),
                                 '[]');
                IF jsonb_typeof(e -> 'default') = 'array' THEN
                    arms := arms || jsonb_build_array(jsonb_build_array('default', e -> 'default'));
                END IF;
            END IF;
            FOR arm IN SELECT a.x FROM jsonb_array_elements(arms) WITH ORDINALITY AS a(x, o) ORDER BY a.o LOOP
                pos := cardinality(edges);
                SELECT * INTO r
                  FROM workflow._diagram_chain(arm -> 1, phase, states, fmt, depth, n, nodes, edges, classes);
                n := r.n;
                nodes := r.nodes;
                classes := r.classes;
                IF r.first_id IS NULL THEN
                    edges := r.edges || workflow._diagram_edge(fmt, f, j, arm ->> 0);
                ELSE
                    -- the labelled edge into the branch before the branch's own
                    edges := r.edges[1:pos] || workflow._diagram_edge(fmt, f, r.first_id, arm ->> 0)
                             || r.edges[pos + 1:] || workflow._diagram_edge(fmt, r.last_id, j, NULL);
                END IF;
            END LOOP;
            SELECT * INTO nodes, classes
              FROM workflow._diagram_node(fmt, j, 'join', ARRAY['end of ' || ename], NULL, depth, nodes, classes);
            l := j;

        ELSIF e ? 'foreach' THEN
            second := 'concurrency ' || (e ->> 'concurrency');
            IF jsonb_typeof(e -> 'do') = 'object' THEN
                -- one workflow per item
                version := coalesce(' v' || (e -> 'do' ->> 'version'), '');
                SELECT * INTO nodes, classes
                  FROM workflow._diagram_node(fmt, f, 'subworkflow',
                                              ARRAY[ename || ': ' || (e -> 'do' ->> 'workflow') || version,
                                                    'for each item', second],
                                              states -> path, depth, nodes, classes);
            ELSE
                SELECT * INTO nodes, classes
                  FROM workflow._diagram_node(fmt, f, 'foreach', ARRAY[ename, 'for each item', second],
                                              states -> path, depth, nodes, classes);
                n := n + 1;
                sub := CASE fmt WHEN 'dot' THEN 'cluster_' ELSE 's' END || n;
                nodes := nodes || workflow._diagram_subgraph(fmt, sub, ename || ': each item', depth);
                pos := cardinality(edges);
                SELECT * INTO r
                  FROM workflow._diagram_chain(e -> 'do', phase, states, fmt, depth + 1, n, nodes, edges, classes);
                n := r.n;
                nodes := r.nodes || (repeat('    ', depth) || CASE fmt WHEN 'dot' THEN '}' ELSE 'end' END);
                classes := r.classes;
                edges := r.edges;
                IF r.first_id IS NOT NULL THEN
                    edges := edges[1:pos] || workflow._diagram_edge(fmt, f, r.first_id, 'each item')
                             || edges[pos + 1:];
                    l := r.last_id;
                END IF;
            END IF;

        ELSIF e ? 'workflow' THEN
            version := coalesce(' v' || (e ->> 'version'), '');
            SELECT * INTO nodes, classes
              FROM workflow._diagram_node(fmt, f, 'subworkflow', ARRAY[ename || ': ' || (e ->> 'workflow') || version],
                                          states -> path, depth, nodes, classes);

        ELSIF e ? 'task_type' THEN
            SELECT * INTO nodes, classes
              FROM workflow._diagram_node(fmt, f, 'external', ARRAY[ename, 'task type: ' || (e ->> 'task_type')],
                                          states -> path, depth, nodes, classes);

        ELSIF e ? 'wait' THEN
            second := CASE WHEN e ->> 'wait' = 'signal' THEN 'wait for signal'
                           WHEN jsonb_typeof(e -> 'wait') = 'number' THEN 'wait ' || (e ->> 'wait') || ' s'
                           ELSE 'wait ' || (e ->> 'wait')
                      END;
            SELECT * INTO nodes, classes
              FROM workflow._diagram_node(fmt, f, 'wait', ARRAY[ename, second],
                                          states -> path, depth, nodes, classes);

        ELSE
            SELECT * INTO nodes, classes
              FROM workflow._diagram_node(fmt, f, 'sql', ARRAY[ename], states -> path, depth, nodes, classes);
        END IF;
        last_id := l;
    END LOOP;
END
$$;
COMMENT ON FUNCTION workflow._diagram_chain(jsonb, text, jsonb, text, integer, integer, text[], text[], text[]) IS
    'internal: draw one chain of a workflow definition, recursively';

-- Render a workflow definition as a Mermaid flowchart or a Graphviz
-- digraph, each node with its state from states (node path -> state; NULL
-- for none).  Pure: the definition need not be stored.
CREATE OR REPLACE FUNCTION workflow._diagram(definition jsonb, states jsonb, format text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n           integer := 0;
    nodes       text[] := '{}';
    edges       text[] := '{}';
    classes     text[] := '{}';
    handlers    text[];
    chain_sub   text;           -- the subgraph of the main chain, when there are handlers
    sub         text;
    ph          text;
    pos         integer;
    r           record;         -- the main chain
    h           record;         -- a handler chain
    result      text[];
    p           record;
    cls         text;
BEGIN
    PERFORM workflow._diagram_check_format(format);
    IF definition IS NULL THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(definition) <> 'object' THEN
        RAISE EXCEPTION 'workflow definition must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('The value given is a JSON %s.', jsonb_typeof(definition));
    END IF;
    IF jsonb_typeof(states) = 'null' THEN
        states := NULL;
    ELSIF jsonb_typeof(states) <> 'object' THEN
        RAISE EXCEPTION 'diagram states must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('The value given is a JSON %s.', jsonb_typeof(states));
    END IF;
    handlers := ARRAY(SELECT u.ph FROM unnest(ARRAY['onerror', 'oncancel']) WITH ORDINALITY AS u(ph, o)
                       WHERE jsonb_typeof(definition -> u.ph) = 'array'
                         AND jsonb_array_length(definition -> u.ph) > 0
                       ORDER BY u.o);

    SELECT * INTO nodes, classes
      FROM workflow._diagram_node(format, 'n0', 'terminal', ARRAY['start'], NULL, 1, nodes, classes);
    IF cardinality(handlers) > 0 THEN
        n := n + 1;
        chain_sub := CASE format WHEN 'dot' THEN 'cluster_' ELSE 's' END || n;
        nodes := nodes || workflow._diagram_subgraph(format, chain_sub, 'chain', 1);
    END IF;
    SELECT * INTO r
      FROM workflow._diagram_chain(definition -> 'chain', 'chain', states, format,
                                   CASE WHEN chain_sub IS NULL THEN 1 ELSE 2 END, n, nodes, edges, classes);
    n := r.n + 1;
    nodes := r.nodes;
    IF chain_sub IS NOT NULL THEN
        nodes := nodes || CASE format WHEN 'dot' THEN '    }' ELSE '    end' END;
    END IF;
    classes := r.classes;
    SELECT * INTO nodes, classes
      FROM workflow._diagram_node(format, 'n' || n, 'terminal', ARRAY['end'], NULL, 1, nodes, classes);
    IF r.first_id IS NULL THEN
        edges := ARRAY[workflow._diagram_edge(format, 'n0', 'n' || n, NULL)];
    ELSE
        edges := workflow._diagram_edge(format, 'n0', r.first_id, NULL) || r.edges
                 || workflow._diagram_edge(format, r.last_id, 'n' || n, NULL);
    END IF;

    FOREACH ph IN ARRAY handlers LOOP
        n := n + 1;
        sub := CASE format WHEN 'dot' THEN 'cluster_' ELSE 's' END || n;
        nodes := nodes || workflow._diagram_subgraph(format, sub, ph, 1);
        pos := cardinality(edges);
        SELECT * INTO h
          FROM workflow._diagram_chain(definition -> ph, ph, states, format, 2, n, nodes, edges, classes);
        n := h.n;
        nodes := h.nodes || CASE format WHEN 'dot' THEN '    }' ELSE '    end' END;
        classes := h.classes;
        edges := h.edges[1:pos]
                 || workflow._diagram_edge(format, coalesce(r.last_id, 'n0'), h.first_id,
                                           CASE ph WHEN 'onerror' THEN 'on error' ELSE 'on cancel' END,
                                           true, CASE WHEN r.last_id IS NOT NULL THEN chain_sub END)
                 || h.edges[pos + 1:];
    END LOOP;

    IF format = 'dot' THEN
        result := ARRAY['digraph workflow {', '    compound=true;'] || nodes || edges || '}'::text;
    ELSE
        result := ARRAY['flowchart TD'] || nodes || edges;
        -- the classes used, in a fixed order
        FOREACH cls IN ARRAY ARRAY['queued', 'requeued', 'running', 'waiting', 'succeeded', 'failed', 'canceled'] LOOP
            CONTINUE WHEN NOT cls = ANY (classes);
            p := workflow._diagram_palette(cls);
            result := result || pg_catalog.format('    classDef %s fill:%s,stroke:%s%s', cls, p.fill, p.stroke,
                                                  CASE cls WHEN 'canceled' THEN ',stroke-dasharray:4 3' ELSE '' END);
        END LOOP;
    END IF;
    RETURN array_to_string(result, E'\n');
END
$$;
COMMENT ON FUNCTION workflow._diagram(jsonb, jsonb, text) IS
    'internal: render a workflow definition as a Mermaid flowchart or a Graphviz digraph, with the states of its nodes (node path "<phase>/<entry name>" -> state)';

-- The states of the nodes of one job (node paths as above), by the chains
-- it runs: {"chain": [...], "onerror": [...], "oncancel": [...]} for a job
-- of a workflow, {"chain": <the branch's entries>} for the child job of a
-- branch, a case or an item, whose nodes keep the phase path_phase of the
-- entry that made it.
--
-- A task of the job: the status of its latest run in the job's current
-- attempt; the task the job is at (phase, step): the job's execution,
-- unless the job has ended.  Inside a parallel or switch entry: the states
-- of the latest child job of each branch (of the chosen case), the same way,
-- recursively.  A sub-workflow: the execution of its latest child job.  A
-- foreach: its item children's states counted per node of its do chain
-- ("3 of 10 succeeded, 2 running"), or their executions counted on the
-- entry itself when each item is a workflow.
CREATE OR REPLACE FUNCTION workflow._diagram_job_states(j workflow.jobs, chains jsonb, path_phase text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    runs    jsonb;
    result  jsonb := '{}';
    ph      text;
    entries jsonb;
    e       jsonb;
    pos     integer;
    pp      text;
    path    text;
    st      text;
    c       workflow.jobs;
    arm     jsonb;
BEGIN
    SELECT coalesce(jsonb_object_agg(r.task, r.status), '{}') INTO runs
      FROM (SELECT DISTINCT ON (t.task) t.task, t.status
              FROM workflow.task_runs t
             WHERE t.job_id = j.id AND t.job_attempt = j.attempt
             ORDER BY t.task, t.id DESC) r;
    FOR ph, entries IN SELECT x.key, x.value FROM jsonb_each(chains) AS x LOOP
        CONTINUE WHEN jsonb_typeof(entries) IS DISTINCT FROM 'array';
        pp := coalesce(path_phase, ph);
        FOR e, pos IN SELECT a.x, a.o - 1 FROM jsonb_array_elements(entries) WITH ORDINALITY AS a(x, o) LOOP
            CONTINUE WHEN jsonb_typeof(e) <> 'object' OR NOT e ? 'name';
            path := pp || '/' || (e ->> 'name');
            st := runs ->> (e ->> 'name');
            IF j.execution NOT IN ('succeeded', 'failed', 'canceled')
               AND j.phase::text = ph AND j.step = pos THEN
                st := j.execution::text;
            END IF;
            IF st IS NOT NULL THEN
                result := result || jsonb_build_object(path, st);
            END IF;

            IF e ? 'parallel' THEN
                -- the latest child job of each branch
                FOR c IN SELECT k.* FROM workflow.jobs k
                          WHERE k.id IN (SELECT DISTINCT ON (b.branch) b.id FROM workflow.jobs b
                                          WHERE b.parent_id = j.id AND b.parent_task = e ->> 'name'
                                          ORDER BY b.branch, b.id DESC)
                          ORDER BY k.id LOOP
                    arm := e -> 'parallel' -> c.branch;
                    IF jsonb_typeof(arm) = 'array' THEN
                        result := result || workflow._diagram_job_states(c, jsonb_build_object('chain', arm), pp);
                    END IF;
                END LOOP;

            ELSIF e ? 'switch' THEN
                -- the latest child job: the case chosen
                SELECT k.* INTO c FROM workflow.jobs k
                 WHERE k.parent_id = j.id AND k.parent_task = e ->> 'name'
                 ORDER BY k.id DESC LIMIT 1;
                IF FOUND THEN
                    arm := CASE WHEN c.branch IS NULL THEN e -> 'default' ELSE e -> 'cases' -> c.branch END;
                    IF jsonb_typeof(arm) = 'array' THEN
                        result := result || workflow._diagram_job_states(c, jsonb_build_object('chain', arm), pp);
                    END IF;
                END IF;

            ELSIF e ? 'foreach' THEN
                -- the latest child job of each item
                IF jsonb_typeof(e -> 'do') = 'array' THEN
                    result := result || workflow._diagram_counts(ARRAY(
                        SELECT workflow._diagram_job_states(k, jsonb_build_object('chain', e -> 'do'), pp)
                          FROM workflow.jobs k
                         WHERE k.id IN (SELECT DISTINCT ON (b.child_index) b.id FROM workflow.jobs b
                                         WHERE b.parent_id = j.id AND b.parent_task = e ->> 'name'
                                         ORDER BY b.child_index, b.id DESC)
                         ORDER BY k.child_index));
                ELSE
                    result := result || workflow._diagram_counts(ARRAY(
                        SELECT jsonb_build_object(path, k.execution)
                          FROM workflow.jobs k
                         WHERE k.id IN (SELECT DISTINCT ON (b.child_index) b.id FROM workflow.jobs b
                                         WHERE b.parent_id = j.id AND b.parent_task = e ->> 'name'
                                         ORDER BY b.child_index, b.id DESC)
                         ORDER BY k.child_index));
                END IF;

            ELSIF e ? 'workflow' THEN
                SELECT k.execution::text INTO st FROM workflow.jobs k
                 WHERE k.parent_id = j.id AND k.parent_task = e ->> 'name'
                 ORDER BY k.id DESC LIMIT 1;
                IF FOUND THEN
                    result := result || jsonb_build_object(path, st);
                END IF;
            END IF;
        END LOOP;
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION workflow._diagram_job_states(workflow.jobs, jsonb, text) IS
    'internal: the state of each node of a job''s diagram (its task runs, its current task, its child jobs)';

-- The states of the children of a foreach entry (one map per child) as
-- counts per node: {"<path>": {"state": <class>, "label": "3 of 10
-- succeeded, 2 running"}}, out of all the children.  The class is the
-- most pressing state present: failed, running, waiting, queued, requeued,
-- canceled, then succeeded.
CREATE OR REPLACE FUNCTION workflow._diagram_counts(per_child jsonb[])
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    shown       CONSTANT text[] := ARRAY['succeeded', 'failed', 'canceled', 'running', 'waiting', 'queued', 'requeued'];
    pressing    CONSTANT text[] := ARRAY['failed', 'running', 'waiting', 'queued', 'requeued', 'canceled', 'succeeded'];
    total       integer := cardinality(per_child);
BEGIN
    RETURN coalesce((
        SELECT jsonb_object_agg(y.path, jsonb_build_object('state', y.cls, 'label', y.label))
          FROM (SELECT x.path,
                       (array_agg(x.st ORDER BY array_position(pressing, x.st), x.st))[1] AS cls,
                       string_agg(CASE WHEN x.rn = 1 THEN x.k || ' of ' || total || ' ' || x.st
                                       ELSE x.k || ' ' || x.st END, ', ' ORDER BY x.rn) AS label
                  FROM (SELECT g.path, g.st, g.k,
                               row_number() OVER (PARTITION BY g.path
                                                  ORDER BY array_position(shown, g.st), g.st) AS rn
                          FROM (SELECT kv.key AS path,
                                       coalesce(kv.value ->> 'state', kv.value #>> '{}') AS st,
                                       count(*) AS k
                                  FROM unnest(per_child) AS m(states), jsonb_each(m.states) AS kv
                                 GROUP BY 1, 2) g) x
                 GROUP BY x.path) y), '{}');
END
$$;
COMMENT ON FUNCTION workflow._diagram_counts(jsonb[]) IS
    'internal: the node states of the child jobs of a foreach entry, counted per node';

-------------------------------------------------------------------------------
-- diagram, job_diagram

CREATE OR REPLACE FUNCTION workflow._diagram(name text, version integer, format text, p_caller oid)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    def     jsonb;
BEGIN
    IF _diagram.name IS NULL THEN
        RAISE EXCEPTION 'workflow name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM workflow._diagram_check_format(_diagram.format);
    IF _diagram.version IS NULL THEN
        SELECT w.definition INTO def FROM workflow.workflows w
         WHERE w.name = _diagram.name ORDER BY w.version DESC LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'workflow "%" does not exist', _diagram.name
                USING ERRCODE = 'undefined_object',
                      HINT = 'Create it with workflow.create_workflow().';
        END IF;
    ELSE
        SELECT w.definition INTO def FROM workflow.workflows w
         WHERE w.name = _diagram.name AND w.version = _diagram.version;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'version % of workflow "%" does not exist', _diagram.version, _diagram.name
                USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
    RETURN workflow._diagram(def, NULL::jsonb, _diagram.format);
END
$$;
COMMENT ON FUNCTION workflow._diagram(text, integer, text, oid) IS
    'internal: implementation of workflow.diagram, with the calling role (src/api.c)';

-- A job's diagram.  The child job of a branch, a case or an item of its
-- parent runs that part of the parent's definition as its chain: its
-- diagram is that chain's.
CREATE OR REPLACE FUNCTION workflow._job_diagram(id bigint, format text, p_caller oid)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j       workflow.jobs;
    def     jsonb;
    entry   jsonb;
    part    jsonb;
BEGIN
    IF _job_diagram.id IS NULL THEN
        RAISE EXCEPTION 'job id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM workflow._diagram_check_format(_job_diagram.format);
    SELECT * INTO j FROM workflow.jobs jj WHERE jj.id = _job_diagram.id;
    IF NOT FOUND OR NOT workflow._may_see(j.created_by, p_caller) THEN
        RAISE EXCEPTION 'job % does not exist', _job_diagram.id
            USING ERRCODE = 'undefined_object';
    END IF;
    IF j.parent_id IS NOT NULL THEN
        SELECT jsonb_path_query_first(
                   w.definition,
                   'strict $.**?(@.name == $n && (exists(@.parallel) || exists(@.switch) || exists(@.foreach)))',
                   jsonb_build_object('n', j.parent_task))
          INTO entry
          FROM workflow.jobs p JOIN workflow.workflows w ON w.id = p.workflow_id
         WHERE p.id = j.parent_id;
        part := CASE WHEN entry ? 'parallel' THEN entry -> 'parallel' -> j.branch
                     WHEN entry ? 'switch' AND j.branch IS NULL THEN entry -> 'default'
                     WHEN entry ? 'switch' THEN entry -> 'cases' -> j.branch
                     WHEN entry ? 'foreach' THEN entry -> 'do'
                END;
        IF jsonb_typeof(part) = 'array' THEN
            def := jsonb_build_object('chain', part);
        END IF;
    END IF;
    IF def IS NULL THEN
        SELECT w.definition INTO def FROM workflow.workflows w WHERE w.id = j.workflow_id;
    END IF;
    RETURN workflow._diagram(
        def,
        workflow._diagram_job_states(j, jsonb_strip_nulls(jsonb_build_object('chain', def -> 'chain',
                                                                               'onerror', def -> 'onerror',
                                                                               'oncancel', def -> 'oncancel')),
                                     NULL),
        _job_diagram.format);
END
$$;
COMMENT ON FUNCTION workflow._job_diagram(bigint, text, oid) IS
    'internal: implementation of workflow.job_diagram, with the calling role (src/api.c)';

-------------------------------------------------------------------------------
-- Public entry points: C functions that pass the exact calling role to
-- the SECURITY DEFINER implementations above (src/api.c)

CREATE OR REPLACE FUNCTION workflow.diagram(name text, version integer DEFAULT NULL, format text DEFAULT 'mermaid')
RETURNS text
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.diagram(text, integer, text) IS
    'the latest (or given) version of a workflow as a Mermaid flowchart (format mermaid) or a Graphviz digraph (format dot)';

CREATE OR REPLACE FUNCTION workflow.job_diagram(id bigint, format text DEFAULT 'mermaid')
RETURNS text
LANGUAGE c
AS 'MODULE_PATHNAME', 'workflow_api_call';
COMMENT ON FUNCTION workflow.job_diagram(bigint, text) IS
    'the diagram of a job''s workflow version with the state of each node in the job''s current attempt, its child jobs included';
