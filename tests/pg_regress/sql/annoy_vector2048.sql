-- The annoy index on vector2048: plans, recall against brute force, exact
-- order, every opclass, edge cases, options and errors.
-- Each test runs in its own schema of the shared regression database.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS imgsim;
CREATE SCHEMA annoy_vector2048;
SET search_path = annoy_vector2048, public;
RESET client_min_messages;

CREATE FUNCTION pg_temp.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- A structured set: 40 clusters of 50 points with different spreads, plus
-- 30 queries that are noisy points near 30 of the centres (not in the table).
SELECT setseed(0.42);
CREATE TABLE centres AS
SELECT c, (0.05 + random() * 0.25)::real AS spread, array_agg((random() * 2 - 1)::real) AS x
FROM generate_series(1, 40) c, generate_series(1, 2048) d GROUP BY c;
CREATE TABLE items (id serial PRIMARY KEY, cluster int, emb vector2048);
INSERT INTO items (cluster, emb)
SELECT c, (SELECT array_agg(v + ((random() * 2 - 1) * spread)::real) FROM unnest(x) v)::vector2048
FROM centres, generate_series(1, 50);
CREATE TABLE queries AS
SELECT row_number() OVER () AS qid, (SELECT array_agg(v + ((random() * 2 - 1) * spread)::real) FROM unnest(x) v)::vector2048 AS q
FROM centres WHERE c % 4 <> 0;

CREATE INDEX items_l2 ON items USING annoy (emb);
SELECT items, live_items, deleted_items, trees FROM annoy_index_check('items_l2');

-- The planner uses the index for ORDER BY ... LIMIT, and not for a filter.
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY emb <-> (SELECT q FROM queries WHERE qid = 1) LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE emb <-> (SELECT q FROM queries WHERE qid = 1) < 1 LIMIT 10;

-- Recall@10 against brute force, and results in exact distance order.
CREATE FUNCTION pg_temp.top10(use_index boolean) RETURNS TABLE (qid bigint, ids int[], dists float8[]) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('enable_seqscan', (NOT use_index)::text, true);
    PERFORM set_config('enable_indexscan', use_index::text, true);
    RETURN QUERY
    SELECT queries.qid, array_agg(n.id ORDER BY n.d, n.id), array_agg(n.d ORDER BY n.d, n.id)
    FROM queries, LATERAL (SELECT id, emb <-> q AS d FROM items ORDER BY emb <-> q LIMIT 10) n
    GROUP BY queries.qid;
END $$;
CREATE TABLE exact AS SELECT * FROM pg_temp.top10(false);
CREATE TABLE approx AS SELECT * FROM pg_temp.top10(true);
SELECT count(*) AS queries,
       avg((SELECT count(*) FROM unnest(a.ids) i WHERE i = ANY (e.ids)))::numeric(4,2) / 10 >= 0.95 AS recall_at_10_ok
FROM exact e JOIN approx a USING (qid);
-- Rows come back in ascending exact distance, and the distances are exact.
SET enable_seqscan = off;
SELECT bool_and(d = sorted) AS ascending FROM (
    SELECT array_agg(emb <-> q ORDER BY ord) AS d, array_agg(emb <-> q ORDER BY emb <-> q) AS sorted
    FROM queries, LATERAL (SELECT emb, row_number() OVER () AS ord FROM (SELECT emb FROM items ORDER BY emb <-> q LIMIT 25) s) r
    GROUP BY qid) t;
RESET enable_seqscan;

-- Each opclass agrees with its operator.
CREATE INDEX items_cosine ON items USING annoy (emb vector2048_cosine_ops);
CREATE INDEX items_ip ON items USING annoy (emb vector2048_ip_ops) WITH (trees = 4);
SELECT trees FROM annoy_index_check('items_ip');
SET enable_seqscan = off;
DROP INDEX items_l2;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY emb <=> (SELECT q FROM queries WHERE qid = 1) LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY emb <#> (SELECT q FROM queries WHERE qid = 1) LIMIT 10;
CREATE TEMP TABLE op_check AS
SELECT qid,
       array(SELECT id FROM items ORDER BY emb <=> q LIMIT 10) AS cosine_index,
       array(SELECT id FROM items ORDER BY emb <#> q LIMIT 10) AS ip_index
FROM queries;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT avg((SELECT count(*) FROM unnest(cosine_index) i WHERE i = ANY (array(SELECT id FROM items ORDER BY emb <=> q LIMIT 10))))::numeric / 10 >= 0.95 AS cosine_recall_ok,
       avg((SELECT count(*) FROM unnest(ip_index) i WHERE i = ANY (array(SELECT id FROM items ORDER BY emb <#> q LIMIT 10))))::numeric / 10 >= 0.90 AS ip_recall_ok
FROM op_check JOIN queries USING (qid);
RESET enable_indexscan;
DROP INDEX items_cosine, items_ip;

-- Edge cases: empty table, one row, NULLs, duplicates, LIMIT beyond the table.
SET enable_seqscan = off;
CREATE TABLE edge (id int, emb vector2048);
CREATE INDEX edge_idx ON edge USING annoy (emb);
SELECT items FROM annoy_index_check('edge_idx');
SELECT count(*) AS rows_from_empty FROM (SELECT id FROM edge ORDER BY emb <-> array_fill(0::real, ARRAY[2048])::vector2048 LIMIT 5) s;
INSERT INTO edge VALUES (1, array_fill(1::real, ARRAY[2048])::vector2048), (2, NULL);
SELECT id FROM edge ORDER BY emb <-> array_fill(0::real, ARRAY[2048])::vector2048 LIMIT 5;
INSERT INTO edge SELECT 10 + i, array_fill(0.5::real, ARRAY[2048])::vector2048 FROM generate_series(1, 300) i;
INSERT INTO edge VALUES (3, NULL);
DROP INDEX edge_idx;
CREATE INDEX edge_idx ON edge USING annoy (emb) WITH (trees = 3, leaf_size = 16);
SELECT items, live_items, trees FROM annoy_index_check('edge_idx');
SELECT count(*) AS all_rows, count(DISTINCT id) AS distinct_rows, bool_and(emb IS NOT NULL) AS no_nulls
FROM (SELECT id, emb FROM edge ORDER BY emb <-> array_fill(0.5::real, ARRAY[2048])::vector2048 LIMIT 1000) s;
SELECT id FROM edge ORDER BY emb <-> array_fill(2::real, ARRAY[2048])::vector2048 LIMIT 1;
RESET enable_seqscan;

-- An unlogged table's index (ambuildempty writes its init fork) works like any other.
CREATE UNLOGGED TABLE scratch AS SELECT id, emb FROM items WHERE id <= 300;
CREATE INDEX scratch_idx ON scratch USING annoy (emb) WITH (trees = 2);
INSERT INTO scratch SELECT id, emb FROM items WHERE id BETWEEN 301 AND 400;
SET enable_seqscan = off;
SELECT live_items FROM annoy_index_check('scratch_idx');
SELECT bool_and(s.id = (SELECT id FROM scratch ORDER BY emb <-> s.emb LIMIT 1)) AS each_row_finds_itself FROM scratch s;
RESET enable_seqscan;

-- An update-heavy load: once VACUUM has freed the records of the replaced
-- rows it compacts the index (live records moved into the freed slots, new
-- trees, the relation truncated): only live records stay, and the index
-- stays about a fresh build's size.
CREATE TABLE churn AS SELECT id, emb FROM items WHERE id <= 400;
CREATE INDEX churn_idx ON churn USING annoy (emb) WITH (trees = 2);
SELECT pg_relation_size('churn_idx') AS fresh_size \gset
UPDATE churn SET emb = i.emb FROM items i WHERE i.id = churn.id + 400;
VACUUM churn;
SELECT live_items, deleted_items, free_items FROM annoy_index_check('churn_idx');
UPDATE churn SET emb = i.emb FROM items i WHERE i.id = churn.id + 800;
VACUUM churn;
UPDATE churn SET emb = i.emb FROM items i WHERE i.id = churn.id + 1200;
VACUUM churn;
UPDATE churn SET emb = i.emb FROM items i WHERE i.id = churn.id + 1600;
VACUUM churn;
SELECT live_items, deleted_items, free_items FROM annoy_index_check('churn_idx');
SELECT pg_relation_size('churn_idx') <= :fresh_size * 1.3 AS near_a_fresh_build;
SET enable_seqscan = off;
SELECT bool_and(c.id = (SELECT id FROM churn ORDER BY emb <-> c.emb LIMIT 1)) AS each_row_finds_itself FROM churn c;
RESET enable_seqscan;

-- Options are checked; scans need ORDER BY; only annoy indexes are checked.
SELECT pg_temp.sqlstate_of($$CREATE INDEX ON items USING annoy (emb) WITH (trees = 0)$$) AS zero_trees;
SELECT pg_temp.sqlstate_of($$CREATE INDEX ON items USING annoy (emb) WITH (trees = 65)$$) AS too_many_trees;
SELECT pg_temp.sqlstate_of($$CREATE INDEX ON items USING annoy (emb) WITH (leaf_size = 1)$$) AS leaf_size_one;
SELECT pg_temp.sqlstate_of($$CREATE INDEX ON items USING annoy (emb) WITH (rebuild_rows = -1)$$) AS negative_rebuild_rows;
SELECT pg_temp.sqlstate_of($$CREATE INDEX ON items USING annoy (emb) WITH (colour = 3)$$) AS unknown_option;
-- annoy.rerank 0 (the default) lets the index's metric pick the first batch.
SHOW annoy.rerank;
SELECT pg_temp.sqlstate_of($$SET annoy.rerank = -1$$) AS negative_rerank;
SELECT pg_temp.sqlstate_of($$CREATE INDEX ON items USING annoy (cluster)$$) AS wrong_type;
SELECT pg_temp.sqlstate_of($$SELECT * FROM annoy_index_check('items')$$) AS check_a_table;
SELECT pg_temp.sqlstate_of($$SELECT * FROM annoy_index_check('items_pkey')$$) AS check_a_btree;

-- Past maintenance_work_mem the build does not fail: it streams the rows
-- that do not fit into the trees built from those that do (with a NOTICE),
-- and the index is complete and as good.
SELECT count(*) AS other_annoy_indexes FROM pg_index JOIN pg_class c ON c.oid = indexrelid
JOIN pg_am am ON am.oid = c.relam WHERE indrelid = 'items'::regclass AND amname = 'annoy';
SET maintenance_work_mem = '1MB';
CREATE INDEX items_small_memory ON items USING annoy (emb);
RESET maintenance_work_mem;
SELECT items, live_items, leaf_entries = trees * items AS every_tree_has_every_item FROM annoy_index_check('items_small_memory');
CREATE TABLE approx_small_memory AS SELECT * FROM pg_temp.top10(true);
SELECT avg((SELECT count(*) FROM unnest(a.ids) i WHERE i = ANY (e.ids)))::numeric(4,2) / 10 >= 0.95 AS recall_at_10_ok
FROM exact e JOIN approx_small_memory a USING (qid);

SET client_min_messages = warning;
DROP SCHEMA annoy_vector2048 CASCADE;
