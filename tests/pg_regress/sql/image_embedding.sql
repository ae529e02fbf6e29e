-- image_embedding(bytea): real photos (scikit-image's CC0 samples) through
-- the bundled EfficientNet-Lite0, and every error path by SQLSTATE.
-- Each test runs in its own schema of the shared regression database.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS imgsim;
CREATE SCHEMA image_embedding;
SET search_path = image_embedding, public;
RESET client_min_messages;
\getenv photos IMGSIM_TEST_PHOTOS

-- SQLSTATE only: messages of the image decoders are not ours to pin down.
CREATE FUNCTION pg_temp.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
-- SQLSTATE and message, for errors of our own.
CREATE FUNCTION pg_temp.error_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '/[^ ]*/', '…/', 'g');
END $$;

CREATE TABLE photos (name text PRIMARY KEY, image bytea, emb vector2048);
INSERT INTO photos (name, image)
SELECT f, pg_read_binary_file(:'photos' || '/' || f)
FROM pg_ls_dir(:'photos') AS f
WHERE f !~ '^derived_' AND f ~ '\.(png|jpg)$';
UPDATE photos SET emb = image_embedding(image);
SELECT count(*) >= 10 AS enough_photos FROM photos;

-- Unit norm, 2048 dimensions, and the same bytes give the same vector.
SELECT bool_and(abs(l2_norm(emb) - 1) < 1e-3) AS unit_norm, bool_and(vector_dims(emb) = 2048) AS dims FROM photos;
SELECT bool_and(image_embedding(image) = emb) AS deterministic FROM photos;

-- A re-encoded, a resized and a cropped copy (none byte-identical to a
-- stored photo) find their original first, in SQL and by exact distance.
CREATE TEMP TABLE queries (query text, original text);
INSERT INTO queries VALUES
    ('derived_chelsea_q40.jpg', 'chelsea.png'),
    ('derived_coffee_half.png', 'coffee.png'),
    ('derived_chelsea_crop.webp', 'chelsea.png'),
    ('derived_astronaut_large_progressive.jpg', 'astronaut.png');
SELECT query,
       (SELECT name FROM photos ORDER BY emb <-> image_embedding(pg_read_binary_file(:'photos' || '/' || query)) LIMIT 1) = original AS original_first
FROM queries ORDER BY query;

-- A progressive JPEG this large (2304 px) is read at 1/8 scale from its DC
-- coefficients: it embeds close to the same pixels as a baseline JPEG, which
-- is decoded in full (cosine above 0.98, i.e. distance below 0.2).
SELECT image_embedding(pg_read_binary_file(:'photos' || '/derived_astronaut_large_progressive.jpg'))
   <-> image_embedding(pg_read_binary_file(:'photos' || '/derived_astronaut_large_baseline.jpg')) < 0.2
    AS progressive_close_to_baseline;

-- Bad input: each error has its SQLSTATE, and the session goes on.
SELECT pg_temp.sqlstate_of($$SELECT image_embedding(''::bytea)$$) AS empty;
SELECT pg_temp.sqlstate_of($$SELECT image_embedding('\x000102030405060708090a0b0c0d0e0f'::bytea)$$) AS not_an_image;
SELECT pg_temp.sqlstate_of(format('SELECT image_embedding(pg_read_binary_file(%L))', :'photos' || '/derived_truncated.jpg')) AS truncated;
SELECT pg_temp.sqlstate_of(format('SELECT image_embedding(substr(pg_read_binary_file(%L), 1, 2000))', :'photos' || '/chelsea.png')) AS cut_png;
SELECT pg_temp.sqlstate_of(format('SELECT image_embedding(pg_read_binary_file(%L))', :'photos' || '/derived_bomb.png')) AS decompression_bomb;
SELECT image_embedding(NULL) IS NULL AS strict;
SELECT vector_dims(image_embedding(image)) AS still_working FROM photos WHERE name = 'coffee.png';

-- Long runs can be cancelled: statement_timeout stops a batch between images.
-- Every row's input is distinct (decoders ignore bytes after the image), so
-- the per-transaction cache cannot answer them and the batch cannot finish
-- in time whatever the join order.
SET statement_timeout = '300ms';
SELECT count(image_embedding(image || int4send(g))) FROM photos, generate_series(1, 1000) g;
RESET statement_timeout;

-- A model whose descriptor is not 2048-d, or a missing manifest, is refused.
SET imgsim.model = '/nonexistent/model.json';
SELECT pg_temp.sqlstate_of($$SELECT image_embedding(image) FROM photos LIMIT 1$$) AS missing_manifest;
SELECT set_config('imgsim.model', :'photos' || '/derived_manifest_1280.json', false) IS NOT NULL AS model_set;
SELECT pg_temp.error_of($$SELECT image_embedding(image) FROM photos LIMIT 1$$) AS not_2048_dims;
RESET imgsim.model;
SELECT vector_dims(image_embedding(image)) AS bundled_model_again FROM photos WHERE name = 'coffee.png';
SELECT provolatile, proisstrict, proparallel FROM pg_proc WHERE proname = 'image_embedding';

SET client_min_messages = warning;
DROP SCHEMA image_embedding CASCADE;
