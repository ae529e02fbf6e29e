-- Runs after every generated function: completes the type and declares casts
-- and operators over the functions pgrx created.

-- Fixed length, no varlena header: never TOASTed (see src/vector/mod.rs).
CREATE TYPE vector2048 (
    INPUT = vector2048_in,
    OUTPUT = vector2048_out,
    RECEIVE = vector2048_recv,
    SEND = vector2048_send,
    INTERNALLENGTH = 4096,
    ALIGNMENT = int2,
    STORAGE = plain
);

CREATE CAST (real[] AS vector2048) WITH FUNCTION real_array_to_vector2048(real[]) AS ASSIGNMENT;
CREATE CAST (double precision[] AS vector2048) WITH FUNCTION double_array_to_vector2048(double precision[]) AS ASSIGNMENT;
CREATE CAST (vector2048 AS real[]) WITH FUNCTION vector2048_to_real_array(vector2048) AS ASSIGNMENT;
CREATE CAST (vector2048 AS double precision[]) WITH FUNCTION vector2048_to_double_array(vector2048) AS ASSIGNMENT;

CREATE OPERATOR <-> (
    LEFTARG = vector2048, RIGHTARG = vector2048, FUNCTION = l2_distance, COMMUTATOR = '<->'
);
CREATE OPERATOR <=> (
    LEFTARG = vector2048, RIGHTARG = vector2048, FUNCTION = cosine_distance, COMMUTATOR = '<=>'
);
CREATE OPERATOR <#> (
    LEFTARG = vector2048, RIGHTARG = vector2048, FUNCTION = vector2048_negative_inner_product, COMMUTATOR = '<#>'
);
CREATE OPERATOR = (
    LEFTARG = vector2048, RIGHTARG = vector2048, FUNCTION = vector2048_eq,
    COMMUTATOR = '=', NEGATOR = '<>', RESTRICT = eqsel, JOIN = eqjoinsel
);
CREATE OPERATOR <> (
    LEFTARG = vector2048, RIGHTARG = vector2048, FUNCTION = vector2048_ne,
    COMMUTATOR = '<>', NEGATOR = '=', RESTRICT = neqsel, JOIN = neqjoinsel
);

-- The annoy index access method and its operator classes. Support function 1
-- returns the opclass's metric (its number in imgsim_forest::Metric), which
-- the build records in the index and the scan orders by.
CREATE ACCESS METHOD annoy TYPE INDEX HANDLER annoy_handler;

CREATE OPERATOR CLASS vector2048_l2_ops DEFAULT FOR TYPE vector2048 USING annoy AS
    OPERATOR 1 <-> (vector2048, vector2048) FOR ORDER BY float_ops,
    FUNCTION 1 annoy_l2_metric(internal);

CREATE OPERATOR CLASS vector2048_cosine_ops FOR TYPE vector2048 USING annoy AS
    OPERATOR 1 <=> (vector2048, vector2048) FOR ORDER BY float_ops,
    FUNCTION 1 annoy_cosine_metric(internal);

CREATE OPERATOR CLASS vector2048_ip_ops FOR TYPE vector2048 USING annoy AS
    OPERATOR 1 <#> (vector2048, vector2048) FOR ORDER BY float_ops,
    FUNCTION 1 annoy_inner_product_metric(internal);

-- image_region_embeddings returns one row per region, always 14 (the planner
-- would otherwise assume 1000 rows of a set-returning function).
ALTER FUNCTION image_region_embeddings(bytea) ROWS 14;
