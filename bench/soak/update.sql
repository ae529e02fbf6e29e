-- A new vector for 2 rows: the index gets new items, the old ones die. FOR
-- UPDATE locks the rows in id order (see delete.sql).
UPDATE soak SET emb = (SELECT array_agg(random()::real - 0.5 + 0 * id * d) FROM generate_series(1, 2048) AS d)::vector2048,
                category = (random() * 9)::int
WHERE id IN (SELECT id FROM soak WHERE id >= (SELECT (random() * max(id))::bigint FROM soak) ORDER BY id LIMIT 2 FOR UPDATE);
