-- A monitoring job's integrity check (waits for writers, holds them off).
SELECT * FROM annoy_index_check('soak_annoy');
