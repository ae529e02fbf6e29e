-- Filtered: the scan keeps going until 5 rows of one category passed.
\set category random(0, 9)
SET enable_seqscan = off;
SELECT id FROM soak WHERE category = :category
ORDER BY emb <-> (SELECT emb FROM soak WHERE id >= (SELECT (random() * max(id))::bigint FROM soak) ORDER BY id LIMIT 1)
LIMIT 5;
