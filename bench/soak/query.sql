-- Unfiltered: the 10 rows nearest a random row's vector.
SET enable_seqscan = off;
SELECT id FROM soak
ORDER BY emb <-> (SELECT emb FROM soak WHERE id >= (SELECT (random() * max(id))::bigint FROM soak) ORDER BY id LIMIT 1)
LIMIT 10;
