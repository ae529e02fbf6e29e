-- Filtered queries never come back short: the annoy scan keeps widening
-- while the executor asks for rows; annoy.max_scan_items bounds that work.
-- Each test runs in its own schema of the shared regression database.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS imgsim;
CREATE SCHEMA annoy_filtered;
SET search_path = annoy_filtered, public;
RESET client_min_messages;
SELECT setseed(0.7);
CREATE TABLE centres AS
SELECT c, array_agg((random() * 2 - 1)::real) AS x FROM generate_series(1, 30) c, generate_series(1, 2048) d GROUP BY c;
CREATE TABLE items (id int PRIMARY KEY, category int, emb vector2048);
INSERT INTO items
SELECT row_number() OVER (), (row_number() OVER ()) % 100,
       (SELECT array_agg(v + ((random() * 2 - 1) * 0.3)::real) FROM unnest(x) v)::vector2048
FROM centres, generate_series(1, 100);
CREATE INDEX items_annoy ON items USING annoy (emb) WITH (trees = 4);
CREATE TABLE query AS SELECT emb AS q FROM items WHERE id = 17;
SET enable_seqscan = off;

EXPLAIN (COSTS OFF) SELECT id FROM items WHERE category = 7 ORDER BY emb <-> (SELECT q FROM query) LIMIT 10;
-- 30 rows have category 7: LIMIT 10 gets 10 of them, LIMIT 40 all 30.
SELECT count(*) AS rows, bool_and(category = 7) AS all_match
FROM (SELECT id, category FROM items WHERE category = 7 ORDER BY emb <-> (SELECT q FROM query) LIMIT 10) s;
SELECT count(*) AS rows FROM (SELECT id FROM items WHERE category = 7 ORDER BY emb <-> (SELECT q FROM query) LIMIT 40) s;
-- One matching row among 3000, the farthest from the query, behind a filter
-- no other index can serve (id + 0): still found.
CREATE TABLE farthest AS
SELECT id FROM items, query ORDER BY emb <-> q DESC LIMIT 1;
SELECT count(*) AS rows FROM (
    SELECT id FROM items WHERE id + 0 = (SELECT id FROM farthest) ORDER BY emb <-> (SELECT q FROM query) LIMIT 10) s;
-- The filtered top 10 against brute force.
CREATE TABLE exact AS
SELECT array(SELECT id FROM items, query WHERE category = 7 ORDER BY emb <-> q LIMIT 10) AS ids;
SELECT (SELECT count(*) FROM unnest(array(
            SELECT id FROM items WHERE category = 7 ORDER BY emb <-> (SELECT q FROM query) LIMIT 10)) i
        WHERE i = ANY ((SELECT ids FROM exact)::int[])) >= 9 AS filtered_recall_ok;

-- Filtered recall@10 against the exact filtered top 10 at 1 %, 10 % and 50 %
-- selectivity, over 20 queries near the centres (not in the table): the scan
-- returns rows in near-exact order deep into the ranking.
CREATE TABLE fqueries AS
SELECT c AS qid, (SELECT array_agg(v + ((random() * 2 - 1) * 0.3)::real) FROM unnest(x) v)::vector2048 AS q
FROM centres WHERE c <= 20;
CREATE FUNCTION pg_temp.filtered_top10(use_index boolean, modulus int)
RETURNS TABLE (qid int, ids int[]) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('enable_seqscan', (NOT use_index)::text, true);
    PERFORM set_config('enable_indexscan', use_index::text, true);
    RETURN QUERY
    SELECT f.qid, array(SELECT id FROM items WHERE id % modulus = f.qid % modulus
                        ORDER BY emb <-> f.q LIMIT 10)
    FROM fqueries f;
END $$;
SELECT modulus, (100 / modulus) || ' %' AS selectivity,
       avg((SELECT count(*) FROM unnest(a.ids) i WHERE i = ANY (e.ids)))::numeric / 10 >= 0.95 AS filtered_recall_ok,
       bool_and(cardinality(a.ids) = 10) AS never_short
FROM unnest(ARRAY[100, 10, 2]) modulus,
     LATERAL pg_temp.filtered_top10(false, modulus) e JOIN LATERAL pg_temp.filtered_top10(true, modulus) a USING (qid)
GROUP BY modulus ORDER BY modulus DESC;

-- At the bound the scan ends: the query returns what it found so far.
SET annoy.max_scan_items = 100;
SELECT count(*) AS rows_at_bound FROM (
    SELECT id FROM items WHERE id + 0 = (SELECT id FROM farthest) ORDER BY emb <-> (SELECT q FROM query) LIMIT 10) s;
SELECT count(*) AS unfiltered_rows_at_bound FROM (SELECT id FROM items ORDER BY emb <-> (SELECT q FROM query) LIMIT 150) s;
RESET annoy.max_scan_items;
SELECT count(*) AS unfiltered_rows FROM (SELECT id FROM items ORDER BY emb <-> (SELECT q FROM query) LIMIT 150) s;

-- The cost estimate prices the rows a filter makes the scan go through:
-- with seq scans allowed, a 1 % filter takes the exact plan (the index would
-- have to return about 1 000 rows of these 3 000 to find 10), while the
-- unfiltered query keeps the index.
RESET enable_seqscan;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE category = 7 ORDER BY emb <-> (SELECT q FROM query) LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY emb <-> (SELECT q FROM query) LIMIT 10;
SET enable_seqscan = off;

-- REINDEX and REINDEX CONCURRENTLY rebuild the index, which still serves the query.
REINDEX INDEX items_annoy;
SELECT live_items FROM annoy_index_check('items_annoy');
REINDEX INDEX CONCURRENTLY items_annoy;
SELECT live_items FROM annoy_index_check('items_annoy');
SELECT count(*) AS rows FROM (SELECT id FROM items WHERE category = 7 ORDER BY emb <-> (SELECT q FROM query) LIMIT 10) s;

SET client_min_messages = warning;
DROP SCHEMA annoy_filtered CASCADE;
