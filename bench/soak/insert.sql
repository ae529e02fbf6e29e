-- 5 rows per transaction, as an application batching its writes. `0 * g * d`:
-- referring to the outer row makes the vector subquery run once per row, and
-- to its own rows keeps the aggregate inside the subquery.
INSERT INTO soak (category, emb)
SELECT (random() * 9)::int, (SELECT array_agg(random()::real - 0.5 + 0 * g * d) FROM generate_series(1, 2048) AS d)::vector2048
FROM generate_series(1, 5) AS g;
