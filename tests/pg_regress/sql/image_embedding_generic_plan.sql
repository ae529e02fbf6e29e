-- The design card's query, ORDER BY emb <-> image_embedding($1) LIMIT k,
-- under a generic plan: $1 is not folded into a constant at planning time,
-- and the ORDER BY expression is evaluated for every row returned (and for
-- every row read, in a sequential scan). The model must still run once per
-- statement: imgsim_model_runs() counts the images this backend ran through
-- the model.
-- Each test runs in its own schema of the shared regression database.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS imgsim;
CREATE SCHEMA image_embedding_generic_plan;
SET search_path = image_embedding_generic_plan, public;
RESET client_min_messages;
\getenv photos IMGSIM_TEST_PHOTOS
-- Model runs are counted per backend: keep every evaluation in this one.
SET max_parallel_workers_per_gather = 0;

CREATE TABLE photos (id serial PRIMARY KEY, name text UNIQUE, image bytea, emb vector2048);
INSERT INTO photos (name, image)
SELECT f, pg_read_binary_file(:'photos' || '/' || f)
FROM pg_ls_dir(:'photos') AS f
WHERE f !~ '^derived_' AND f ~ '\.(png|jpg)$' ORDER BY f;
SELECT imgsim_model_runs() AS runs \gset
UPDATE photos SET emb = image_embedding(image);
-- Every distinct image ran once.
SELECT imgsim_model_runs() - :runs = (SELECT count(DISTINCT image) FROM photos) AS one_run_per_image,
       count(*) >= 12 AS enough_photos FROM photos;
CREATE INDEX photos_annoy ON photos USING annoy (emb);
ANALYZE photos;
-- The query image: a re-encoded copy, not byte-identical to any stored photo.
SELECT pg_read_binary_file(:'photos' || '/derived_chelsea_q40.jpg') AS query \gset
-- The exact answer, by brute force on the stored vectors.
CREATE TEMP TABLE exact AS
SELECT array(SELECT name FROM photos ORDER BY emb <-> image_embedding(:'query'::bytea), name LIMIT 10) AS top10;

PREPARE design_card(bytea) AS SELECT name FROM photos ORDER BY emb <-> image_embedding($1) LIMIT 10;
PREPARE with_distance(bytea) AS
SELECT name, emb <-> image_embedding($1) AS distance FROM photos ORDER BY emb <-> image_embedding($1) LIMIT 10;
CREATE FUNCTION pg_temp.distances(query bytea) RETURNS TABLE (name text, distance float8) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT p.name, p.emb <-> image_embedding(query) FROM photos p ORDER BY p.emb <-> image_embedding(query) LIMIT 10;
END $$;
SET plan_cache_mode = force_generic_plan;
SET enable_seqscan = off;
-- A generic plan: the index scan's ORDER BY still holds the parameter.
EXPLAIN (COSTS OFF) EXECUTE design_card(:'query');

-- Each execution is its own statement (and transaction): one model run each.
SELECT imgsim_model_runs() AS runs \gset
EXECUTE design_card(:'query') \g /dev/null
EXECUTE design_card(:'query') \g /dev/null
EXECUTE design_card(:'query') \g /dev/null
SELECT imgsim_model_runs() - :runs AS model_runs_for_three_executions;
-- The distance in the select list is the same expression again: still one.
SELECT imgsim_model_runs() AS runs \gset
EXECUTE with_distance(:'query') \g /dev/null
SELECT imgsim_model_runs() - :runs AS model_runs_with_distance;
-- A sequential scan evaluates the expression for every row of the table.
-- (A cached plan keeps the settings it was planned with: prepare it anew.)
SET enable_seqscan = on;
SET enable_indexscan = off;
PREPARE design_card_seq_scan(bytea) AS SELECT name FROM photos ORDER BY emb <-> image_embedding($1) LIMIT 10;
EXPLAIN (COSTS OFF) EXECUTE design_card_seq_scan(:'query');
SELECT imgsim_model_runs() AS runs \gset
EXECUTE design_card_seq_scan(:'query') \g /dev/null
SELECT imgsim_model_runs() - :runs AS model_runs_seq_scan;
DEALLOCATE design_card_seq_scan;
RESET enable_indexscan;
SET enable_seqscan = off;

-- Within one transaction the descriptor is kept across statements; the next
-- transaction starts afresh.
SELECT imgsim_model_runs() AS runs \gset
BEGIN;
EXECUTE design_card(:'query') \g /dev/null
EXECUTE design_card(:'query') \g /dev/null
COMMIT;
SELECT imgsim_model_runs() - :runs AS model_runs_in_one_transaction;
SELECT imgsim_model_runs() AS runs \gset
EXECUTE design_card(:'query') \g /dev/null
SELECT imgsim_model_runs() - :runs AS model_runs_next_transaction;

-- The answers are right: a PL/pgSQL function's query is a cached plan too
-- (generic here), and it returns the brute-force top 10, with distances
-- equal to the exact ones.
CREATE FUNCTION pg_temp.top10(query bytea) RETURNS text[] LANGUAGE plpgsql AS $$
BEGIN
    RETURN array(SELECT name FROM photos ORDER BY emb <-> image_embedding(query) LIMIT 10);
END $$;
SELECT pg_temp.top10(:'query') = top10 AS generic_plan_answers_exactly FROM exact;
SELECT pg_temp.top10(:'query') = top10 AS again_from_the_plan_cache FROM exact;
SELECT bool_and(abs(distance - (SELECT p.emb <-> image_embedding(:'query'::bytea) FROM photos p WHERE p.name = d.name)) < 1e-9)
       AS distances_exact
FROM (SELECT name, distance FROM pg_temp.distances(:'query')) d;

-- Different images in one statement get their own descriptors: each photo,
-- three times in a row, is embedded as it was stored, and runs once.
SELECT imgsim_model_runs() AS runs \gset
SELECT bool_and(image_embedding(image) = emb) AS each_its_own
FROM (SELECT image, emb FROM photos, generate_series(1, 3) ORDER BY name) s;
SELECT imgsim_model_runs() - :runs = (SELECT count(DISTINCT image) FROM photos) AS one_run_per_image;
-- Alternating between two images stays within the kept inputs.
SELECT imgsim_model_runs() AS runs \gset
SELECT count(*) AS rows, bool_and(image_embedding(image) = emb) AS right_vectors
FROM (SELECT image, emb FROM photos, generate_series(1, 5) g WHERE name IN ('chelsea.png', 'coffee.png') ORDER BY g, name) s;
SELECT imgsim_model_runs() - :runs AS model_runs_alternating;

SELECT provolatile, proparallel FROM pg_proc WHERE proname = 'imgsim_model_runs';

RESET plan_cache_mode;
RESET enable_seqscan;
DEALLOCATE design_card;
DEALLOCATE with_distance;
SET client_min_messages = warning;
DROP SCHEMA image_embedding_generic_plan CASCADE;
