-- The vector2048 type: I/O, casts, distances compared with an exact
-- computation in SQL, and every error path by SQLSTATE.
-- Each test runs in its own schema of the shared regression database.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS imgsim;
CREATE SCHEMA vector2048;
SET search_path = vector2048, public;
RESET client_min_messages;
SET extra_float_digits = 0;

-- Runs a statement and returns its SQLSTATE, message and detail, or 'no error'.
CREATE FUNCTION pg_temp.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' / ' || nullif(detail, ''), '');
END $$;

CREATE TEMP TABLE vectors (id int PRIMARY KEY, v vector2048);
SELECT setseed(0.25);
INSERT INTO vectors
SELECT i, array_agg((random() * 2 - 1)::real * (CASE WHEN i = 4 THEN 1000 ELSE 1 END))::vector2048
FROM generate_series(1, 4) AS i, generate_series(1, 2048) AS d
GROUP BY i;

-- Text output reads back as the same value; whitespace is tolerated.
SELECT count(*) AS round_trips FROM vectors WHERE v::text::vector2048 = v;
SELECT count(*) AS spaced_round_trips FROM vectors
WHERE (' [ ' || array_to_string(v::real[], ' ,  ') || ' ] ')::vector2048 = v;
SELECT left(('[' || repeat('0.5,', 2047) || '-1e-3]')::vector2048::text, 20) AS prefix,
       right(('[' || repeat('0.5,', 2047) || '-1e-3]')::vector2048::text, 20) AS suffix;
SELECT ('[' || repeat('1, ', 2047) || '65504]')::vector2048 <-> array_fill(1::real, ARRAY[2048])::vector2048 AS largest_half;

-- Casts to and from arrays keep every element.
SELECT count(*) AS real_round_trips FROM vectors WHERE (v::real[])::vector2048 = v;
SELECT count(*) AS double_round_trips FROM vectors WHERE (v::double precision[])::vector2048 = v;
SELECT array_length(v::real[], 1), vector_dims(v) FROM vectors WHERE id = 1;

-- Distances against an exact computation over the elements.
WITH pairs AS (
    SELECT a.id AS a, b.id AS b, a.v AS va, b.v AS vb,
           (SELECT sum((x - y)::float8 ^ 2) FROM unnest(a.v::float8[], b.v::float8[]) AS t(x, y)) AS l2sq,
           (SELECT sum(x * y) FROM unnest(a.v::float8[], b.v::float8[]) AS t(x, y)) AS dot,
           (SELECT sqrt(sum(x * x)) FROM unnest(a.v::float8[]) AS t(x)) AS na,
           (SELECT sqrt(sum(x * x)) FROM unnest(b.v::float8[]) AS t(x)) AS nb
    FROM vectors a, vectors b
)
SELECT a, b,
       abs((va <-> vb) - sqrt(l2sq)) <= 1e-5 * sqrt(l2sq) + 1e-9 AS l2_ok,
       (va <-> vb) = l2_distance(va, vb) AS l2_op,
       abs(inner_product(va, vb) - dot) <= 1e-5 * na * nb AS ip_ok,
       (va <#> vb) = -inner_product(va, vb) AS ip_op,
       abs((va <=> vb) - (1 - dot / (na * nb))) <= 1e-5 AS cosine_ok,
       (va <=> vb) = cosine_distance(va, vb) AS cosine_op,
       abs(l2_norm(va) - na) <= 1e-5 * na AS norm_ok
FROM pairs ORDER BY a, b;

-- Normalised vectors have unit norm and keep their direction.
SELECT id, abs(l2_norm(l2_normalize(v)) - 1) < 1e-3 AS unit, (l2_normalize(v) <=> v) < 1e-5 AS same_direction
FROM vectors ORDER BY id;

-- Equality.
SELECT a.id, b.id, a.v = b.v AS eq, a.v <> b.v AS ne FROM vectors a, vectors b WHERE a.id <= 2 AND b.id <= 2 ORDER BY 1, 2;
SELECT array_fill(0::real, ARRAY[2048])::vector2048 = ('[-0' || repeat(',0', 2047) || ']')::vector2048 AS zero_equals_negative_zero;

-- Binary send/recv: COPY BINARY round trip.
COPY (SELECT id, v FROM vectors) TO '/tmp/imgsim_regress_vectors.bin' (FORMAT binary);
CREATE TEMP TABLE copied (id int, v vector2048);
COPY copied FROM '/tmp/imgsim_regress_vectors.bin' (FORMAT binary);
SELECT count(*) AS binary_round_trips FROM copied JOIN vectors USING (id) WHERE copied.v = vectors.v;
SELECT length(vector2048_send(v)) AS wire_bytes FROM vectors WHERE id = 1;

-- Bad binary values: a bytea field in a binary COPY file reaches the
-- column's receive function as it is.
CREATE FUNCTION pg_temp.recv_bytes(payload bytea) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (SELECT %L::bytea) TO %L (FORMAT binary)', payload, '/tmp/imgsim_regress_bad.bin');
    RETURN pg_temp.sqlstate_of($q$COPY copied (v) FROM '/tmp/imgsim_regress_bad.bin' (FORMAT binary)$q$);
END $$;
SELECT pg_temp.recv_bytes(vector2048_send(v)) AS good_payload FROM vectors WHERE id = 1;
SELECT pg_temp.recv_bytes(substr(vector2048_send(v), 1, 100)) AS short_payload FROM vectors WHERE id = 1;
SELECT pg_temp.recv_bytes('\x0004'::bytea || substr(vector2048_send(v), 3)) AS wrong_dims FROM vectors WHERE id = 1;
SELECT pg_temp.recv_bytes(substr(vector2048_send(v), 1, 4) || '\x7e00'::bytea || substr(vector2048_send(v), 7)) AS nan_bits FROM vectors WHERE id = 1;
SELECT pg_temp.recv_bytes(substr(vector2048_send(v), 1, 4) || '\x7c00'::bytea || substr(vector2048_send(v), 7)) AS infinity_bits FROM vectors WHERE id = 1;

-- Bad text input, each with its SQLSTATE.
SELECT pg_temp.sqlstate_of($$SELECT '[1,2,3]'::vector2048$$) AS too_few;
SELECT pg_temp.sqlstate_of($$SELECT ('[' || repeat('1,', 2048) || '1]')::vector2048$$) AS too_many;
SELECT pg_temp.sqlstate_of($$SELECT '[]'::vector2048$$) AS empty;
SELECT pg_temp.sqlstate_of($$SELECT ('[' || repeat('1,', 2047) || 'NaN]')::vector2048$$) AS nan;
SELECT pg_temp.sqlstate_of($$SELECT ('[' || repeat('1,', 2047) || '-Infinity]')::vector2048$$) AS infinity;
SELECT pg_temp.sqlstate_of($$SELECT ('[' || repeat('1,', 2047) || '65520]')::vector2048$$) AS out_of_half_range;
SELECT pg_temp.sqlstate_of($$SELECT ('[' || repeat('1,', 2047) || '1e300]')::vector2048$$) AS far_out_of_range;
SELECT pg_temp.sqlstate_of($$SELECT ('[' || repeat('1,', 2046) || '1,,1]')::vector2048$$) AS empty_element;
SELECT pg_temp.sqlstate_of($$SELECT ('[' || repeat('1,', 2047) || 'one]')::vector2048$$) AS not_a_number;
SELECT pg_temp.sqlstate_of($$SELECT ('[' || repeat('1,', 2047) || '1')::vector2048$$) AS no_closing_bracket;
SELECT pg_temp.sqlstate_of($$SELECT 'hello'::vector2048$$) AS garbage;
SELECT pg_temp.sqlstate_of($$SELECT ''::vector2048$$) AS empty_string;

-- Bad arrays.
SELECT pg_temp.sqlstate_of($$SELECT ARRAY[1,2]::real[]::vector2048$$) AS short_array;
SELECT pg_temp.sqlstate_of($$SELECT (array_fill(1::real, ARRAY[2047]) || NULL::real)::vector2048$$) AS null_element;
SELECT pg_temp.sqlstate_of($$SELECT (array_fill(1::float8, ARRAY[2047]) || 'NaN'::float8)::vector2048$$) AS nan_element;
SELECT pg_temp.sqlstate_of($$SELECT (array_fill(1::float8, ARRAY[2047]) || 1e6::float8)::vector2048$$) AS out_of_range_element;

-- Zero vectors have no direction.
SELECT pg_temp.sqlstate_of($$SELECT array_fill(0::real, ARRAY[2048])::vector2048 <=> array_fill(1::real, ARRAY[2048])::vector2048$$) AS cosine_zero;
SELECT pg_temp.sqlstate_of($$SELECT l2_normalize(array_fill(0::real, ARRAY[2048])::vector2048)$$) AS normalize_zero;
SELECT array_fill(0::real, ARRAY[2048])::vector2048 <-> array_fill(0::real, ARRAY[2048])::vector2048 AS l2_of_zeros;

-- NULLs: every function is STRICT.
SELECT NULL::vector2048 <-> v IS NULL AS null_distance FROM vectors WHERE id = 1;

-- The session goes on after errors, and the functions are immutable,
-- strict and parallel safe.
SELECT proname, provolatile, proisstrict, proparallel FROM pg_proc
WHERE proname IN ('l2_distance', 'cosine_distance', 'inner_product', 'vector_dims', 'l2_norm', 'l2_normalize',
                  'vector2048_in', 'vector2048_out', 'vector2048_send', 'vector2048_recv')
ORDER BY proname;
SELECT typlen, typbyval, typalign, typstorage FROM pg_type WHERE typname = 'vector2048';

SET client_min_messages = warning;
DROP SCHEMA vector2048 CASCADE;
