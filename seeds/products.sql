-- Generates products rows 1..rows inside PostgreSQL from (id, seed) alone: no random(),
-- so the same rows and seed always give the same table content.
-- psycopg placeholders: rows, seed. Use mod(), never the percent operator, in this file.
--
-- Hostile values sit at fixed ids, whatever the seed, so tests can find them:
--   name         hostile_names[mod(id, 101)]                (ids 1..22 of every 101)
--   description  NULL when mod(id, 89) = 1, '' when = 2, hostile_descriptions[mod(id, 89) - 2],
--                a 2-10 KB text when mod(id, 997) = 500, and about 2.5 percent NULL by hash
--   tags         NULL / tricky elements when mod(id, 83) in 1..5
--   price        NULL when mod(id, 53) = 1, 0.00 when mod(id, 211) = 5, negative when
--                mod(id, 1009) = 7, 9999999999.99 when mod(id, 10007) = 11, ~1.5 percent NULL by hash
--   created_at   whole seconds (no fraction) when mod(id, 17) = 0
-- Everything else (words, category, status, tenant, price, quantity, times) comes from four
-- 64-bit hashes of the id keyed by the seed.
WITH w AS (
    SELECT
        ARRAY['books', 'toys', 'garden', 'kitchen', 'electronics',
              'sports', 'beauty', 'automotive', 'grocery', 'office'] AS categories,
        ARRAY['Compact', 'Deluxe', 'Classic', 'Rugged', 'Smart', 'Eco', 'Premium', 'Portable',
              'Vintage', 'Modern', 'Mini', 'Heavy-duty', 'Wireless', 'Organic', 'Foldable',
              'Ultra'] AS adjectives,
        ARRAY['Bamboo', 'Steel', 'Oak', 'Cotton', 'Ceramic', 'Glass', 'Leather', 'Wool',
              'Copper', 'Silicone', 'Linen', 'Walnut', 'Marble', 'Titanium', 'Canvas',
              'Cork'] AS materials,
        ARRAY['Kettle', 'Lamp', 'Notebook', 'Drone', 'Backpack', 'Blender', 'Chair', 'Puzzle',
              'Racket', 'Shovel', 'Stapler', 'Headphones', 'Skillet', 'Mug', 'Tent', 'Helmet',
              'Speaker', 'Planter', 'Brush', 'Jacket', 'Scooter', 'Clock', 'Towel', 'Charger',
              'Desk', 'Candle', 'Wallet', 'Kite', 'Trowel', 'Knife', 'Monitor',
              'Yoga Mat'] AS nouns,
        ARRAY['Lightweight and durable', 'Easy to clean', 'Handmade from recycled materials',
              'Built for everyday use', 'Quiet and compact', 'Water resistant', 'Soft grip design',
              'Fast charging', 'Designed in Lisbon', 'A customer favourite', 'Made to last',
              'Space saving', 'Dishwasher safe', 'Travel friendly', 'Energy efficient',
              'Classic look'] AS openers,
        ARRAY['for everyday use.', 'with a two-year warranty.', 'in a gift box.',
              'ideal for home and office.', 'for beginners and pros.', 'that fits any room.',
              'sold as a set of two.', 'with free returns.', 'from sustainable sources.',
              'in three colours.', 'for indoor and outdoor use.', 'that ships in 24 hours.',
              'with spare parts included.', 'loved by our customers.', 'at a fair price.',
              'for small spaces.'] AS closers,
        ARRAY['new', 'sale', 'gift', 'eco', 'bestseller', 'limited', 'clearance', 'bundle',
              'handmade', 'imported', 'local', 'premium', 'kids', 'outdoor', 'vegan',
              'refurb'] AS tag_words,
        ARRAY['Widget, large, blue',
              '12" Vinyl Record "Deluxe Edition"',
              E'Two-line\nproduct name',
              E'CRLF\r\nproduct name',
              E'Bare CR\rproduct name',
              'Crème brûlée torch',
              '東京タワー 模型',
              '🚀🔥 Rocket lamp',
              '=HYPERLINK("http://evil.example/","Click me")',
              '+1+2',
              '-2+3',
              '@SUM(A1:A9)',
              E'\tTab-led name',
              E'C:\\Temp\\new\\file.txt',
              E'\\N',
              'NULL',
              '',
              '=cmd|'' /C calc''!A0',
              '  padded with spaces  ',
              '"Quoted" at the start, and a comma',
              E'Zero\u200Bwidth and \u202Ereversed',
              E'Semicolon; pipe | and tab\tinside'] AS hostile_names,
        ARRAY['Fits 10", 12" and 14" pans, "non-stick", oven-safe',
              E'First line\nSecond line\nThird line',
              E'Windows line\r\nsecond line',
              E'Ends with a newline\n',
              '=2+5+cmd|'' /C calc''!A0',
              '@import, a cell starting with an at sign',
              '-10 off today, then +5 tomorrow',
              '+44 20 7946 0958',
              E'\tIndented with a tab',
              E'Backslash \\ then \\N then C:\\path\\',
              'Мультиязычный — ελληνικά — العربية — 中文 — 日本語 — 🎉✨👍🏽',
              E'All at once: comma, "quote", CRLF\r\n, LF\n, CR\r, tab\t and \\ backslash',
              ' ',
              E'\r\n',
              '"',
              ',',
              E'=SUM(1,2)\nsecond line'] AS hostile_descriptions
)
INSERT INTO products (id, sku, name, description, category, status, price, quantity,
                      tags, tenant_id, created_at, updated_at)
SELECT
    g.i,
    'SKU-' || lpad(g.i::text, 8, '0') || '-' || upper(lpad(to_hex((h.a >> 54) & 1023), 3, '0')),
    coalesce(w.hostile_names[mod(g.i, 101)],
             w.adjectives[1 + (h.a & 15)] || ' ' || w.materials[1 + ((h.a >> 4) & 15)]
                 || ' ' || w.nouns[1 + ((h.a >> 8) & 31)]),
    CASE
        WHEN mod(g.i, 89) = 1 THEN NULL
        WHEN mod(g.i, 89) = 2 THEN ''
        WHEN mod(g.i, 997) = 500 THEN
            'Long description of item ' || g.i || E'.\n'
            || left(repeat(E'Specifications, "quoted" values, and notes; a line break follows.\r\n', 160),
                    2000 + ((h.d >> 5) & 8191)::int)
        WHEN mod(g.i, 89) > 2 AND w.hostile_descriptions[mod(g.i, 89) - 2] IS NOT NULL THEN
            w.hostile_descriptions[mod(g.i, 89) - 2]
        WHEN (h.d & 31) = 0 THEN NULL
        ELSE w.openers[1 + ((h.b >> 2) & 15)] || ' ' || w.closers[1 + ((h.b >> 6) & 15)]
    END,
    w.categories[1 + mod((h.a >> 13) & 65535, 10)],
    CASE
        WHEN mod((h.a >> 29) & 1023, 100) < 80 THEN 'active'
        WHEN mod((h.a >> 29) & 1023, 100) < 95 THEN 'inactive'
        ELSE 'archived'
    END,
    CASE
        WHEN mod(g.i, 53) = 1 THEN NULL
        WHEN ((h.b >> 51) & 63) = 0 THEN NULL
        WHEN mod(g.i, 211) = 5 THEN 0.00
        WHEN mod(g.i, 1009) = 7 THEN -(1 + ((h.b >> 32) & 524287))::numeric / 100
        WHEN mod(g.i, 10007) = 11 THEN 9999999999.99
        ELSE (1 + ((h.b >> 32) & 524287))::numeric / 100
    END,
    CASE WHEN ((h.b >> 57) & 127) = 0 THEN NULL ELSE (h.c & 4095)::int END,
    CASE mod(g.i, 83)
        WHEN 1 THEN NULL
        WHEN 2 THEN ARRAY['a,b', 'say "hi"', E'back\\slash']
        WHEN 3 THEN ARRAY['NULL', '', ' spaced ']
        WHEN 4 THEN ARRAY['=cmd', '+tag', '東京']
        WHEN 5 THEN ARRAY['x', NULL]
        ELSE CASE (h.c >> 12) & 3
                 WHEN 0 THEN '{}'::text[]
                 WHEN 1 THEN ARRAY[w.tag_words[1 + ((h.c >> 14) & 15)]]
                 WHEN 2 THEN ARRAY[w.tag_words[1 + ((h.c >> 14) & 15)], w.tag_words[1 + ((h.c >> 18) & 15)]]
                 ELSE ARRAY[w.tag_words[1 + ((h.c >> 14) & 15)], w.tag_words[1 + ((h.c >> 18) & 15)],
                            w.tag_words[1 + ((h.c >> 22) & 15)]]
             END
    END,
    CASE WHEN ((h.a >> 39) & 7) = 0 THEN 1 ELSE 2 + mod((h.a >> 42) & 4095, 49) END,
    t.created_at,
    CASE
        WHEN ((h.c >> 46) & 3) = 0 THEN NULL
        ELSE t.created_at + ((h.d >> 18) & 8388607) * interval '1 second'
             + mod((h.d >> 41) & 1048575, 1000000) * interval '1 microsecond'
    END
FROM generate_series(1, %(rows)s::bigint) AS g(i)
CROSS JOIN w
CROSS JOIN LATERAL (
    SELECT hashtextextended(g.i::text, %(seed)s::bigint) AS a,
           hashtextextended('b' || g.i, %(seed)s::bigint) AS b,
           hashtextextended('c' || g.i, %(seed)s::bigint) AS c,
           hashtextextended('d' || g.i, %(seed)s::bigint) AS d
) AS h
CROSS JOIN LATERAL (
    SELECT timestamptz '2023-01-01 00:00:00+00' + g.i * interval '37 seconds'
           + CASE WHEN mod(g.i, 17) = 0 THEN interval '0'
                  ELSE mod((h.c >> 26) & 1048575, 1000000) * interval '1 microsecond' END
           AS created_at
) AS t
