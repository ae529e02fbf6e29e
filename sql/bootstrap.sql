-- Runs before every generated function: the functions below take and return
-- vector2048, so it must exist as a shell type first (finalize.sql completes it).
CREATE TYPE vector2048;
