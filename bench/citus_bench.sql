-- Queries/s and recall@10 of ORDER BY emb <-> $1 LIMIT 10 over items(id, emb),
-- the same SQL on a single node and on a Citus coordinator. The exact top 10
-- comes from ORDER BY l2_distance(emb, $1), which no index serves, so it is
-- exact on every shard without any setting having to reach the workers.
-- usage: psql -v exact=true|false -f citus_bench.sql   (exact=true stores the
-- exact answers once; false prints "seconds recall" of one run)
\set ON_ERROR_STOP 1
SET jit = off;
CREATE TABLE IF NOT EXISTS exact_top10 (qid bigint PRIMARY KEY, ids bigint[]);
-- (On Citus a warning says the temporary function stays on the coordinator: it should.)
SET client_min_messages = error;
CREATE OR REPLACE FUNCTION pg_temp.run_queries(store_exact boolean) RETURNS TABLE (seconds float8, recall float8)
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    q record;
    got bigint[];
    found_ids float8 := 0;
BEGIN
    FOR q IN SELECT id, emb FROM queries ORDER BY id LOOP
        IF store_exact THEN
            EXECUTE 'SELECT array(SELECT id FROM items ORDER BY l2_distance(emb, $1) LIMIT 10)' INTO got USING q.emb;
            INSERT INTO exact_top10 VALUES (q.id, got);
        ELSE
            EXECUTE 'SELECT array(SELECT id FROM items ORDER BY emb <-> $1 LIMIT 10)' INTO got USING q.emb;
            found_ids := found_ids + (SELECT count(*) FROM unnest(got) g WHERE g = ANY ((SELECT ids FROM exact_top10 WHERE qid = q.id)::bigint[]));
        END IF;
    END LOOP;
    seconds := extract(epoch FROM clock_timestamp() - started);
    recall := found_ids / (10.0 * (SELECT count(*) FROM queries));
    RETURN NEXT;
END $$;
RESET client_min_messages;
\pset tuples_only on
\pset format unaligned
\pset fieldsep ' '
\if :exact
TRUNCATE exact_top10;
SELECT round(seconds::numeric, 2) FROM pg_temp.run_queries(true);
\else
SELECT round(seconds::numeric, 3), round(recall::numeric, 4) FROM pg_temp.run_queries(false);
\endif
