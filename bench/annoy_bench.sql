-- Recall@10 and queries/s of an index against the exact scan, in one
-- session. Expects tables items(id, emb) and queries(id, emb) and settings
-- imgsim_bench.sweep (a SQL array of values for the index's search knob) and
-- imgsim_bench.runs; optionally imgsim_bench.knob (default annoy.search_k)
-- and imgsim_bench.method (the label, default annoy), so that the same
-- measurement runs against other indexes (bench/run_pgvector_compare.sh).
\set ON_ERROR_STOP 1
-- enable_seqscan/enable_indexscan toggles make plan costs huge, which would
-- switch on JIT compilation (~100 ms a query) for both methods.
SET jit = off;
\pset footer off

-- Exact top 10 by seq scan + sort, timed.
CREATE TEMP TABLE exact (qid bigint, ids bigint[]);
CREATE TEMP TABLE timings (method text, search_k int, run int, seconds float8, recall float8);
CREATE FUNCTION pg_temp.run_queries(use_index boolean, store_exact boolean) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    q record;
    got bigint[];
    total float8 := 0;
BEGIN
    PERFORM set_config('enable_indexscan', use_index::text, true);
    PERFORM set_config('enable_seqscan', (NOT use_index)::text, true);
    FOR q IN SELECT id, emb FROM queries ORDER BY id LOOP
        -- EXECUTE plans each query afresh: a cached plan would keep the
        -- seq scan of the exact run (GUC changes do not invalidate it).
        EXECUTE 'SELECT array(SELECT id FROM items ORDER BY emb <-> $1 LIMIT 10)' INTO got USING q.emb;
        IF store_exact THEN
            INSERT INTO exact VALUES (q.id, got);
        ELSE
            total := total + (SELECT count(*) FROM unnest(got) g WHERE g = ANY ((SELECT ids FROM exact WHERE qid = q.id)::bigint[]));
        END IF;
    END LOOP;
    PERFORM set_config('imgsim_bench.seconds', extract(epoch FROM clock_timestamp() - started)::text, false);
    RETURN total / (10.0 * (SELECT count(*) FROM queries));
END $$;

SELECT pg_temp.run_queries(false, true);
INSERT INTO timings SELECT 'exact', NULL, 1, current_setting('imgsim_bench.seconds')::float8, 1.0;
DO $$
DECLARE
    k int;
    r int;
    recall float8;
BEGIN
    FOR r IN 2..current_setting('imgsim_bench.runs')::int LOOP
        TRUNCATE exact;
        PERFORM pg_temp.run_queries(false, true);
        INSERT INTO timings SELECT 'exact', NULL, r, current_setting('imgsim_bench.seconds')::float8, 1.0;
    END LOOP;
    FOREACH k IN ARRAY current_setting('imgsim_bench.sweep')::int[] LOOP
        PERFORM set_config(coalesce(nullif(current_setting('imgsim_bench.knob', true), ''), 'annoy.search_k'), k::text, false);
        FOR r IN 1..current_setting('imgsim_bench.runs')::int LOOP
            recall := pg_temp.run_queries(true, false);
            INSERT INTO timings SELECT coalesce(nullif(current_setting('imgsim_bench.method', true), ''), 'annoy'), k, r,
                current_setting('imgsim_bench.seconds')::float8, recall;
        END LOOP;
    END LOOP;
END $$;

SELECT method, search_k,
       round(avg(recall)::numeric, 3) AS recall_at_10,
       round(((SELECT count(*) FROM queries) / percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds))::numeric, 1) AS queries_per_s,
       round((1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) / (SELECT count(*) FROM queries))::numeric, 2) AS ms_per_query
FROM timings GROUP BY method, search_k ORDER BY method DESC, search_k;
