-- Generates uneven_rows rows 1..rows inside PostgreSQL from (id, seed) alone: no random(),
-- so the same rows and seed always give the same table content.
-- psycopg placeholders: rows, seed. Use mod(), never the percent operator, in this file.
--
-- Ids come in blocks of 2000; p is the position in the block (0..1999):
--   p 0..799      tiny    bodies of 5-20 bytes
--   p 800..1399   medium  bodies of 0.5-4.5 KB (CSV quoting: commas, quotes, LF)
--   p 1400..1999  small   bodies of 100-355 bytes
--   burst         a run of 5-36 adjacent ids inside the small region whose bodies are
--                 50-300 KB; its start and length vary by block and seed
--   NULL body when mod(p, 397) = 13, empty body when mod(p, 499) = 7 (outside bursts)
-- A block holds 2.5-7 MB of bodies, depending on its burst: with seed 42, 20,000 rows come to
-- 44 MB of bodies (48 MB as CSV; far less on disk, as TOAST compresses the repeated text).
INSERT INTO uneven_rows (id, label, body)
SELECT g.i, k.kind,
       CASE k.kind
           WHEN 'null' THEN NULL
           WHEN 'empty' THEN ''
           WHEN 'tiny' THEN left(md5(%(seed)s::bigint::text || ':' || g.i), k.width)
           ELSE left(repeat(md5(%(seed)s::bigint::text || ':' || g.i) || E' lorem, "ipsum" dolor\n',
                            k.width / 52 + 1),
                     k.width)
       END
FROM generate_series(1, %(rows)s::bigint) AS g(i)
CROSS JOIN LATERAL (
    SELECT mod(g.i - 1, 2000) AS p,
           hashtextextended(g.i::text, %(seed)s::bigint) AS h,
           hashtextextended('block' || ((g.i - 1) / 2000), %(seed)s::bigint) AS bh
) AS x
CROSS JOIN LATERAL (
    SELECT CASE
               WHEN x.p >= 1400 + (x.bh & 255) AND x.p < 1400 + (x.bh & 255) + 5 + ((x.bh >> 8) & 31)
                   THEN 'burst'
               WHEN mod(x.p, 397) = 13 THEN 'null'
               WHEN mod(x.p, 499) = 7 THEN 'empty'
               WHEN x.p < 800 THEN 'tiny'
               WHEN x.p < 1400 THEN 'medium'
               ELSE 'small'
           END AS kind
) AS c
CROSS JOIN LATERAL (
    SELECT c.kind,
           (CASE c.kind
                WHEN 'burst' THEN 51200 + mod(x.h & 4294967295, 256000)
                WHEN 'tiny' THEN 5 + (x.h & 15)
                WHEN 'medium' THEN 512 + (x.h & 4095)
                WHEN 'small' THEN 100 + (x.h & 255)
                ELSE 0
            END)::int AS width
) AS k
