-- The annoy index on real embeddings: 12 augmented copies (crops, flips,
-- small rotations, colour and JPEG changes) of each bundled photo, embedded
-- by image_embedding. Recall@10 against brute force with the search limited
-- to a fraction of the index, so the trees have to do the work.
-- Each test runs in its own schema of the shared regression database.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS imgsim;
CREATE SCHEMA annoy_image_embedding;
SET search_path = annoy_image_embedding, public;
RESET client_min_messages;
\getenv photos IMGSIM_TEST_PHOTOS
CREATE TABLE aug AS
SELECT f AS name, substring(f FROM '^aug_(.*)_[0-9]+\.jpg$') AS photo,
       image_embedding(pg_read_binary_file(:'photos' || '/aug/' || f)) AS emb
FROM pg_ls_dir(:'photos' || '/aug') AS f WHERE f ~ '^aug_' ORDER BY f;
SELECT count(*) >= 150 AS enough_embeddings, count(DISTINCT photo) >= 12 AS photos FROM aug;

-- The data has the structure we rely on: an image's nearest other image
-- is nearly always a copy of the same photo.
SELECT avg(((SELECT b.photo FROM aug b WHERE b.name <> a.name ORDER BY b.emb <-> a.emb LIMIT 1) = a.photo)::int)::numeric(3,2) >= 0.9
       AS same_photo_nearest
FROM aug a;

CREATE TABLE exact AS
SELECT a.name, array(SELECT b.name FROM aug b ORDER BY b.emb <-> a.emb LIMIT 10) AS top10 FROM aug a;
CREATE INDEX aug_annoy ON aug USING annoy (emb) WITH (leaf_size = 8);
SELECT live_items = (SELECT count(*) FROM aug) AS all_indexed FROM annoy_index_check('aug_annoy');
SET enable_seqscan = off;
SET annoy.search_k = 40;
SET annoy.rerank = 20;
EXPLAIN (COSTS OFF) SELECT name FROM aug ORDER BY emb <-> (SELECT emb FROM aug LIMIT 1) LIMIT 10;
SELECT avg((SELECT count(*) FROM unnest(array(SELECT b.name FROM aug b ORDER BY b.emb <-> a.emb LIMIT 10)) n
            WHERE n = ANY (e.top10)))::numeric / 10 >= 0.9 AS recall_at_10_ok
FROM aug a JOIN exact e USING (name);

SET client_min_messages = warning;
DROP SCHEMA annoy_image_embedding CASCADE;
