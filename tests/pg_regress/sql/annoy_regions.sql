-- Region search (issue 14): image_region_embeddings(bytea), and the two
-- one-statement query forms of README "Searching by regions", answered by
-- annoy index scans and checked against the same merge computed exactly.
-- Each test runs in its own schema of the shared regression database.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS imgsim;
CREATE SCHEMA annoy_regions;
SET search_path = annoy_regions, public;
RESET client_min_messages;
\getenv photos IMGSIM_TEST_PHOTOS

CREATE FUNCTION pg_temp.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;

-- Declared like image_embedding, and known to return 14 rows.
SELECT p.provolatile = e.provolatile AS same_volatility, p.proisstrict, p.proparallel, p.proretset, p.prorows
FROM pg_proc p, pg_proc e
WHERE p.proname = 'image_region_embeddings' AND e.proname = 'image_embedding';

CREATE TABLE artworks (id bigserial PRIMARY KEY, name text, image bytea, emb vector2048);
INSERT INTO artworks (name, image)
SELECT f, pg_read_binary_file(:'photos' || '/' || f)
FROM pg_ls_dir(:'photos') AS f
WHERE f ~ '\.(png|jpg)$' AND f !~ '^derived_' ORDER BY f;
UPDATE artworks SET emb = image_embedding(image);
SELECT count(*) >= 10 AS enough_photos FROM artworks;

-- Stored regions (form b): 14 rows per picture.
CREATE TABLE artwork_regions (
    artwork_id bigint REFERENCES artworks ON DELETE CASCADE,
    region int,
    emb vector2048,
    PRIMARY KEY (artwork_id, region)
);
INSERT INTO artwork_regions
SELECT a.id, r.region, r.emb FROM artworks a, image_region_embeddings(a.image) r;
SELECT count(*) = 14 * (SELECT count(*) FROM artworks) AS fourteen_per_picture,
       count(DISTINCT region) AS regions, min(region) AS first, max(region) AS last
FROM artwork_regions;

-- Region 0 is exactly image_embedding(image); every region is a unit vector,
-- and the crops are not copies of the whole picture.
SELECT bool_and(r.emb = a.emb) AS region_0_is_image_embedding
FROM artwork_regions r JOIN artworks a ON a.id = r.artwork_id WHERE r.region = 0;
SELECT bool_and(abs(l2_norm(r.emb) - 1) < 1e-3) AS unit_norm,
       bool_and(r.emb <> a.emb) FILTER (WHERE r.region > 0) AS crops_differ
FROM artwork_regions r JOIN artworks a ON a.id = r.artwork_id;

-- The boxes are the REGIONS of bench/descriptor_options.py, computed here
-- from their definition: the whole picture, a 2x2 grid of windows of 2/3 of
-- each side, a 3x3 grid of windows of 1/2, row by row.
CREATE TEMP TABLE expected_boxes AS
SELECT 0 AS region, 0::float8 AS x, 0::float8 AS y, 1::float8 AS side
UNION ALL
SELECT 1 + i * 2 + j, j * (1 - 2 / 3.0::float8), i * (1 - 2 / 3.0::float8), 2 / 3.0::float8
FROM generate_series(0, 1) i, generate_series(0, 1) j
UNION ALL
SELECT 5 + i * 3 + j, j * 0.25::float8, i * 0.25::float8, 0.5::float8
FROM generate_series(0, 2) i, generate_series(0, 2) j;
SELECT count(*) AS rows,
       bool_and(r.x = e.x::real AND r.y = e.y::real AND r.w = e.side::real AND r.h = e.side::real) AS boxes_match
FROM image_region_embeddings(pg_read_binary_file(:'photos' || '/chelsea.png')) r
JOIN expected_boxes e USING (region);

CREATE INDEX artworks_emb ON artworks USING annoy (emb);
CREATE INDEX artwork_regions_emb ON artwork_regions USING annoy (emb);

-- The query forms of the README, as a driver sends them (the image is $1).
-- (a) the query's regions against the stored pictures: a picture pasted
-- into a larger one.
PREPARE query_regions(bytea) AS
SELECT a.name, best.distance, best.region
FROM (
    SELECT DISTINCT ON (m.id) m.id, m.distance, r.region
    FROM image_region_embeddings($1) r
    CROSS JOIN LATERAL (
        SELECT id, emb <-> r.emb AS distance FROM artworks
        ORDER BY emb <-> r.emb LIMIT 10
    ) m
    ORDER BY m.id, m.distance, r.region
) best JOIN artworks a USING (id)
ORDER BY best.distance, a.name LIMIT 10;
-- (b) the query against the stored pictures' regions: a crop of one.
PREPARE stored_regions(bytea) AS
SELECT a.name, best.distance, best.region
FROM (
    SELECT DISTINCT ON (artwork_id) artwork_id, distance, region
    FROM (
        SELECT artwork_id, region, emb <-> image_embedding($1) AS distance FROM artwork_regions
        ORDER BY emb <-> image_embedding($1) LIMIT 140
    ) m
    ORDER BY artwork_id, distance, region
) best JOIN artworks a ON a.id = best.artwork_id
ORDER BY best.distance, a.name LIMIT 10;
-- (a) and (b) in one statement: 14 model runs, both index scans.
PREPARE both_forms(bytea) AS
WITH q AS MATERIALIZED (SELECT region, emb FROM image_region_embeddings($1))
SELECT a.name, best.distance
FROM (
    SELECT id, min(distance) AS distance
    FROM (
        SELECT m.id, m.distance FROM q
        CROSS JOIN LATERAL (
            SELECT id, emb <-> q.emb AS distance FROM artworks
            ORDER BY emb <-> q.emb LIMIT 10
        ) m
        UNION ALL
        SELECT artwork_id, distance FROM (
            SELECT artwork_id, emb <-> (SELECT emb FROM q WHERE region = 0) AS distance FROM artwork_regions
            ORDER BY emb <-> (SELECT emb FROM q WHERE region = 0) LIMIT 140
        ) s
    ) c GROUP BY id
) best JOIN artworks a USING (id)
ORDER BY best.distance, a.name LIMIT 10;
-- The plain search, for comparison.
PREPARE whole_picture(bytea) AS
SELECT name, emb <-> image_embedding($1) AS distance FROM artworks
ORDER BY emb <-> image_embedding($1), name LIMIT 10;

-- Both are answered by annoy index scans (the tables are small, so the
-- planner would rather sort them; the plan is what a large table gets).
SET enable_seqscan = off;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE query_regions('');
EXPLAIN (COSTS OFF) EXECUTE stored_regions('');
EXPLAIN (COSTS OFF) EXECUTE both_forms('');
RESET plan_cache_mode;

-- Index answers against exact ones (sequential scans and sorts, in their
-- own statements): the same pictures in the same order, the same distances.
CREATE FUNCTION pg_temp.same_answers(index_answers regclass, exact_answers regclass) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
    names_index text[];
    names_exact text[];
    worst float8;
BEGIN
    EXECUTE format('SELECT array_agg(name ORDER BY distance, name) FROM %s', index_answers) INTO names_index;
    EXECUTE format('SELECT array_agg(name ORDER BY distance, name) FROM %s', exact_answers) INTO names_exact;
    EXECUTE format('SELECT max(abs(i.distance - e.distance)) FROM %s i JOIN %s e USING (name)', index_answers, exact_answers)
        INTO worst;
    RETURN names_index = names_exact AND worst < 1e-3;
END $$;
\set pasted '\'' :photos '/derived_coffee_pasted_in_motorcycle.png\''
\set crop '\'' :photos '/derived_rocket_third.png\''

-- A photo (coffee.png) pasted at half size into another (motorcycle_left.png),
-- off the grid of windows: the plain search finds the photo it was pasted
-- into first; the query's regions find the pasted photo first. Model runs:
-- 14 for the query's regions (each statement is its own transaction, so the
-- whole picture is not kept from an earlier one) and for both forms in one
-- statement, one for the plain search and for the stored regions.
SELECT imgsim_model_runs() AS runs \gset
CREATE TEMP TABLE pasted_whole AS EXECUTE whole_picture(pg_read_binary_file(:pasted));
SELECT imgsim_model_runs() - :runs AS whole_picture_runs;
SELECT imgsim_model_runs() AS runs \gset
CREATE TEMP TABLE pasted_a AS EXECUTE query_regions(pg_read_binary_file(:pasted));
SELECT imgsim_model_runs() - :runs AS query_regions_runs;
SELECT imgsim_model_runs() AS runs \gset
CREATE TEMP TABLE pasted_b AS EXECUTE stored_regions(pg_read_binary_file(:pasted));
SELECT imgsim_model_runs() - :runs AS stored_regions_runs;
SELECT imgsim_model_runs() AS runs \gset
CREATE TEMP TABLE pasted_both AS EXECUTE both_forms(pg_read_binary_file(:pasted));
SELECT imgsim_model_runs() - :runs AS both_forms_runs;
SELECT (SELECT name FROM pasted_whole ORDER BY distance, name LIMIT 1) AS whole_picture_first,
       (SELECT name FROM pasted_a ORDER BY distance, name LIMIT 1) AS query_regions_first,
       (SELECT count(*) + 1 FROM pasted_whole
        WHERE distance < (SELECT distance FROM pasted_whole WHERE name = 'coffee.png')) AS whole_picture_rank_of_coffee,
       (SELECT region FROM pasted_a WHERE name = 'coffee.png') > 0 AS found_by_a_window,
       (SELECT name FROM pasted_both ORDER BY distance, name LIMIT 1) AS both_forms_first;

-- A crop of a third of rocket.jpg: its stored regions match it far better
-- than the whole picture does.
CREATE TEMP TABLE crop_whole AS EXECUTE whole_picture(pg_read_binary_file(:crop));
CREATE TEMP TABLE crop_b AS EXECUTE stored_regions(pg_read_binary_file(:crop));
CREATE TEMP TABLE crop_a AS EXECUTE query_regions(pg_read_binary_file(:crop));
CREATE TEMP TABLE crop_both AS EXECUTE both_forms(pg_read_binary_file(:crop));
SELECT (SELECT name FROM crop_b ORDER BY distance, name LIMIT 1) AS stored_regions_first,
       (SELECT region FROM crop_b WHERE name = 'rocket.jpg') > 0 AS found_by_a_window,
       (SELECT distance FROM crop_b WHERE name = 'rocket.jpg')
         < (SELECT distance FROM crop_whole WHERE name = 'rocket.jpg') - 0.1 AS closer_than_whole_picture,
       (SELECT name FROM crop_both ORDER BY distance, name LIMIT 1) AS both_forms_first;

-- A stored picture itself: both forms find it at distance 0 (its region 0).
CREATE TEMP TABLE same_a AS EXECUTE query_regions(pg_read_binary_file(:'photos' || '/horse.png'));
CREATE TEMP TABLE same_b AS EXECUTE stored_regions(pg_read_binary_file(:'photos' || '/horse.png'));
SELECT (SELECT name || ' ' || distance || ' region ' || region FROM same_a ORDER BY distance LIMIT 1) AS query_regions,
       (SELECT name || ' ' || distance || ' region ' || region FROM same_b ORDER BY distance LIMIT 1) AS stored_regions;

-- The same merges computed exactly, from every distance (no index, no
-- per-region LIMIT: the ten best per region are enough to merge the ten best
-- pictures, which this checks too).
SET enable_seqscan = on;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
CREATE FUNCTION pg_temp.exact_whole_picture(query bytea) RETURNS TABLE (name text, distance float8) LANGUAGE sql AS $$
    SELECT name, emb <-> image_embedding(query) AS distance FROM artworks
    ORDER BY distance, name LIMIT 10
$$;
CREATE FUNCTION pg_temp.exact_query_regions(query bytea) RETURNS TABLE (name text, distance float8) LANGUAGE sql AS $$
    SELECT a.name, min(a.emb <-> r.emb) AS distance
    FROM image_region_embeddings(query) r, artworks a
    GROUP BY a.name ORDER BY distance, name LIMIT 10
$$;
CREATE FUNCTION pg_temp.exact_stored_regions(query bytea) RETURNS TABLE (name text, distance float8) LANGUAGE sql AS $$
    SELECT a.name, min(ar.emb <-> image_embedding(query)) AS distance
    FROM artwork_regions ar JOIN artworks a ON a.id = ar.artwork_id
    GROUP BY a.name ORDER BY distance, name LIMIT 10
$$;
CREATE FUNCTION pg_temp.exact_both_forms(query bytea) RETURNS TABLE (name text, distance float8) LANGUAGE sql AS $$
    SELECT name, min(distance) AS distance
    FROM (SELECT * FROM pg_temp.exact_query_regions(query)
          UNION ALL SELECT * FROM pg_temp.exact_stored_regions(query)) c
    GROUP BY name ORDER BY distance, name LIMIT 10
$$;
CREATE TEMP TABLE pasted_whole_exact AS SELECT * FROM pg_temp.exact_whole_picture(pg_read_binary_file(:pasted));
CREATE TEMP TABLE pasted_a_exact AS SELECT * FROM pg_temp.exact_query_regions(pg_read_binary_file(:pasted));
CREATE TEMP TABLE pasted_b_exact AS SELECT * FROM pg_temp.exact_stored_regions(pg_read_binary_file(:pasted));
CREATE TEMP TABLE crop_whole_exact AS SELECT * FROM pg_temp.exact_whole_picture(pg_read_binary_file(:crop));
CREATE TEMP TABLE crop_a_exact AS SELECT * FROM pg_temp.exact_query_regions(pg_read_binary_file(:crop));
CREATE TEMP TABLE crop_b_exact AS SELECT * FROM pg_temp.exact_stored_regions(pg_read_binary_file(:crop));
CREATE TEMP TABLE pasted_both_exact AS SELECT * FROM pg_temp.exact_both_forms(pg_read_binary_file(:pasted));
CREATE TEMP TABLE crop_both_exact AS SELECT * FROM pg_temp.exact_both_forms(pg_read_binary_file(:crop));
RESET enable_seqscan;
RESET enable_indexscan;
RESET enable_bitmapscan;
SELECT t AS answers, pg_temp.same_answers(t::regclass, (t || '_exact')::regclass) AS index_equals_exact
FROM unnest(ARRAY['pasted_whole', 'pasted_a', 'pasted_b', 'pasted_both', 'crop_whole', 'crop_a', 'crop_b', 'crop_both']) t;
SELECT count(*) AS pasted_a_rows FROM pasted_a;

-- The whole picture is kept for the transaction: after image_embedding of
-- the same bytes, the regions cost 13 model runs.
BEGIN;
SELECT imgsim_model_runs() AS runs \gset
SELECT vector_dims(image_embedding(pg_read_binary_file(:'photos' || '/coffee.png'))) AS dims;
SELECT imgsim_model_runs() - :runs AS image_embedding_runs;
SELECT count(*) AS rows FROM image_region_embeddings(pg_read_binary_file(:'photos' || '/coffee.png'));
SELECT imgsim_model_runs() - :runs AS with_regions_runs;
COMMIT;

-- Bad input: the SQLSTATEs of image_embedding, and the session goes on.
SELECT pg_temp.sqlstate_of($$SELECT count(*) FROM image_region_embeddings(''::bytea)$$) AS empty;
SELECT pg_temp.sqlstate_of($$SELECT count(*) FROM image_region_embeddings('\x000102030405060708090a0b0c0d0e0f'::bytea)$$) AS not_an_image;
SELECT pg_temp.sqlstate_of(format('SELECT count(*) FROM image_region_embeddings(pg_read_binary_file(%L))', :'photos' || '/derived_truncated.jpg')) AS truncated;
SELECT pg_temp.sqlstate_of(format('SELECT count(*) FROM image_region_embeddings(pg_read_binary_file(%L))', :'photos' || '/derived_bomb.png')) AS decompression_bomb;
SELECT pg_temp.sqlstate_of($$EXECUTE query_regions('\x00'::bytea)$$) AS query_regions_not_an_image;
SELECT pg_temp.sqlstate_of($$EXECUTE stored_regions(''::bytea)$$) AS stored_regions_empty;
SELECT count(*) AS strict_null FROM image_region_embeddings(NULL);
SELECT count(*) AS still_working FROM image_region_embeddings(pg_read_binary_file(:'photos' || '/coffee.png'));

SET client_min_messages = warning;
DROP SCHEMA annoy_regions CASCADE;
