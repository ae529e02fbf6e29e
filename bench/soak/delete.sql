-- 5 rows from a random place in the key range. FOR UPDATE locks them in id
-- order (as update.sql does), so a DELETE and an UPDATE never deadlock.
DELETE FROM soak WHERE id IN (
    SELECT id FROM soak WHERE id >= (SELECT (random() * max(id))::bigint FROM soak) ORDER BY id LIMIT 5 FOR UPDATE);
