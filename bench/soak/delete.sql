-- 5 rows from a random place in the key range.
DELETE FROM soak WHERE id IN (
    SELECT id FROM soak WHERE id >= (SELECT (random() * max(id))::bigint FROM soak) ORDER BY id LIMIT 5);
