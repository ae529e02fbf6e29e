-- A small demo of the vector2048 type: 1000 vectors around 10 centres,
-- then the nearest neighbours of a point near centre 3.
DROP EXTENSION IF EXISTS imgsim CASCADE;
CREATE EXTENSION imgsim;
CREATE TABLE points (id bigserial PRIMARY KEY, centre int, emb vector2048);
SELECT setseed(0.5);
CREATE TEMP TABLE centres AS
SELECT c, array_agg(random()::real ORDER BY d) AS x FROM generate_series(1, 10) c, generate_series(1, 2048) d GROUP BY c;
INSERT INTO points (centre, emb)
SELECT c, (SELECT array_agg(v + (random() * 0.2 - 0.1)::real) FROM unnest(x) AS v)::vector2048
FROM centres, generate_series(1, 100);
\echo 'Ten nearest points to a noisy copy of centre 3:'
WITH query AS (SELECT (SELECT array_agg(v + 0.05::real) FROM unnest(x) AS v)::vector2048 AS q FROM centres WHERE c = 3)
SELECT id, centre, round((emb <-> q)::numeric, 3) AS l2, round((emb <=> q)::numeric, 5) AS cosine
FROM points, query ORDER BY emb <-> q LIMIT 10;
