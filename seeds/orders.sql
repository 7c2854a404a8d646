-- Generates shop.orders rows n = 1..rows inside PostgreSQL from (n, seed) alone: no random(),
-- so the same rows and seed always give the same table content.
-- psycopg placeholders: rows, seed. Use mod(), never the percent operator, in this file.
-- Nothing depends on the session (time zone, DateStyle, IntervalStyle): timestamptz values only
-- ever add seconds to literals with an offset, and no upper() or lower() touches non-ASCII
-- text (their result would follow the locale).
--
-- Edge rows sit at fixed n, whatever the seed, so tests can find them: k = mod(n, 997).
--   k = 1..27    column X takes x_edges[k] where that list has an element k (lists hold 4 to 27
--                values); element 1 is NULL in every nullable column (the row is NULL but for
--                id, code, tenant_id and internal_notes), element 2 is '' or zero, 3 the
--                minimum (-infinity, -2^63, ...), 4 the maximum (infinity, 2^63-1, '24:00:00',
--                ...), the rest NaN, subnormals, hostile text, odd JSON, arrays and addresses
--   code         k = 1..16: hostile_codes[k] || '-' || n; case-only pairs: k = 20 gives
--                'abc-' || n and k = 21 'ABC-' || (n - 1), k = 22 / 23 'über-' / 'ÜBER-' alike
-- Elsewhere everything comes from six 64-bit hashes of n keyed by the seed:
--   id           md5(seed || '-' || n)::uuid: spread, not in n order
--   code         70 percent 'ORD-' || hex || '-' || n, the rest a mixed prefix (non-ASCII,
--                spaces, punctuation) || hex || '-' || n; the text after the last '-' is n, so
--                codes are unique by construction (k = 21 and 23 reuse n - 1, in another case)
--   tenant_id    1: 50, 2: 20, 3: 15, 4: 10, 5: 5 percent
--   status       pending 20, paid 35, shipped 30, cancelled 8, refunded 6, the formula label 1
--   placed_at    whole seconds when mod(n, 7) = 0 (pickup: mod(n, 5) = 0), else microseconds
--   NULLs        also by hash: about 1 to 12 percent of customer, email, paid, details and notes
-- With seed 42, 300,000 rows come to 163 MB of CSV (about 545 bytes a row).
WITH w AS (
    SELECT
        ARRAY['ord-', 'Ord-', 'INV-', 'é-', 'ß-', 'Ü-', '東京-', '🚀-', 'a b-', 'x,y-', 'q"-',
              'Z9-', '0-', '~-', 'İ-', 'Été-'] AS code_prefixes,
        ARRAY['=HYPERLINK("x")', '+1', '-1', '@a', ' leading space', 'trailing space ', E'tab\there',
              E'new\nline', E'cr\rlf\r\n', 'comma,code', 'quote"code', 'ＯＲＤ', 'עברית', '١٢٣',
              '👩‍💻', 'NULL'] AS hostile_codes,
        ARRAY['pending', 'paid', 'shipped', 'cancelled', 'refunded',
              '=HYPERLINK("x")']::shop.order_status[] AS statuses,
        ARRAY[NULL, 'pending', 'pending', '=HYPERLINK("x")', 'paid', 'shipped', 'cancelled',
              'refunded']::shop.order_status[] AS status_edges,
        ARRAY['Ana', 'Bruno', 'Chloé', 'Dmitri', 'Émile', 'Fatima', 'Günter', 'Hana',
              'Ines', 'Jürgen', 'Kenji', 'Lena', 'Mateo', 'Nadia', 'Søren', 'Zoë'] AS first_names,
        ARRAY['Silva', 'Müller', 'Dubois', 'Rossi', 'Kowalski', 'Tanaka', 'García', 'Novak',
              'O''Neill', 'Smith', 'Öztürk', 'Nguyen', 'Jensen', 'Costa', 'Haddad', '李'] AS last_names,
        ARRAY['ana', 'bruno', 'chloe', 'dmitri', 'emile', 'fatima', 'guenter', 'hana',
              'ines', 'juergen', 'kenji', 'lena', 'mateo', 'nadia', 'soeren', 'zoe'] AS mailboxes,
        ARRAY['example.com', 'Example.ORG', 'mail.example.net', 'shop.example'] AS domains,
        ARRAY['PT', 'DE', 'FR', 'ES', 'IT', 'NL', 'BE', 'PL', 'SE', 'DK', 'JP', 'US', 'GB', 'BR',
              'IN', 'IL'] AS countries,
        ARRAY['web', 'app', 'phone', 'store'] AS channels,
        ARRAY['new', 'gift', 'express', 'fragile', 'bulk', 'repeat', 'promo', 'b2b'] AS tag_words,
        ARRAY['Leave at the door', 'Call before delivery', 'Gift wrap, no invoice',
              'Deliver after 6 pm', 'Fragile: glass inside', 'Ring twice, then wait',
              'Back entrance, code 4711', 'Customer asked for a refund quote'] AS openers,
        ARRAY['thanks!', 'as agreed on the phone.', 'second attempt.', 'see ticket.',
              'urgent, please.', 'no rush.', 'same as last time.', 'paid by card.'] AS closers,
        ARRAY['ana', 'ops-bot', 'jürgen', 'finance'] AS reviewers,
        ARRAY[NULL, '', 'O''Brien, Mary', 'Anna "Nan" Smith', E'Line\nBreak', E'Carriage\rReturn',
              E'Windows\r\nLine', E'Tab\tName', '=HYPERLINK("http://evil.example/","x")', '+SUM(1,2)',
              '-1+2', '@cmd', '|calc', '  =1+1', '＝1+1', 'José Ñúñez', 'Zoë Straße-Übel', '東京 太郎',
              'محمد الأحمد', 'שלום עליכם', '👩‍💻 Emoji Person 🚀', repeat('東', 80), ' ', 'NULL',
              E'\\N'] AS customer_edges,
        ARRAY[NULL, '', 'X', 'x', 'pt', 'ÉS', '東京', '=1'] AS country_edges,
        ARRAY[NULL, '', 'UPPER@EXAMPLE.COM', 'upper@example.com', '"quoted,comma"@example.com',
              '=1+1@example.com', 'jörg@bücher.de', 'user+tag@example.com', E'bad\nnewline@example.com',
              '@example.com', ' spaced@example.com '] AS email_edges,
        ARRAY[NULL, '1970-01-01', '-infinity', 'infinity', '0001-01-01', '1901-12-13', '1969-12-31',
              '2204-02-29', '2999-12-31', '2000-02-29', '0044-03-15 BC', '9999-12-31',
              '5874897-12-31']::date[] AS date_edges,
        ARRAY[NULL, '1970-01-01 00:00:00', '-infinity', 'infinity', '0001-01-01 00:00:00',
              '1901-12-13 20:45:52', '1969-12-31 23:59:59.999999', '2204-02-29 12:34:56.5',
              '2999-12-31 23:59:59.999999', '2038-01-19 03:14:08', '4713-11-24 00:00:00 BC',
              '294276-12-31 23:59:59.999999']::timestamp[] AS timestamp_edges,
        ARRAY[NULL, '1970-01-01 00:00:00+00', '-infinity', 'infinity', '0001-01-01 00:00:00+00',
              '1901-12-13 20:45:52+00', '1969-12-31 23:59:59.999999+00', '2204-02-29 23:30:00-05:00',
              '2999-12-31 23:59:59.999999+00', '2038-01-19 03:14:08+00',
              '2024-03-31 02:30:00.25+05:45']::timestamptz[] AS timestamptz_edges,
        ARRAY[NULL, '00:00:00', '00:00:00', '24:00:00', '23:59:59.999999', '12:00:00.000001']::time[]
            AS time_edges,
        ARRAY[NULL, '0', '-178000000 years', '178000000 years', '-1 day -02:03:04',
              '1 year -2 mons 3 days', '00:00:00.000001', '1 mon -30 days', '-00:00:00.000001',
              '1 day 25:00:00']::interval[] AS interval_edges,
        ARRAY[NULL, 0, 0, 2147483647] AS quantity_edges,
        ARRAY[NULL, '0', '-32768', '32767', '-1', '1']::smallint[] AS smallint_edges,
        ARRAY[NULL, '0', '-9223372036854775808', '9223372036854775807', '-1', '1']::bigint[] AS bigint_edges,
        ARRAY[NULL, '0.00', '-999999999999.99', '999999999999.99', '-0.01', '0.01',
              '123456789012.34']::numeric[] AS numeric_edges,
        ARRAY[NULL, '-0', '-Infinity', 'Infinity', 'NaN', '1e-45', '3.4028235e38', '1.1754944e-38',
              '-1e-45', '0']::real[] AS real_edges,
        ARRAY[NULL, '-0', '-Infinity', 'Infinity', 'NaN', '5e-324', '1.7976931348623157e308',
              '2.2250738585072014e-308', '-1.7976931348623157e308', '0.1', '0']::float8[] AS float8_edges,
        ARRAY[NULL, false, false, true] AS bool_edges,
        ARRAY[NULL, '{}', '[]', 'null', '"just a string"', '{"a": {"b": {"c": [1, [2, [3, {"d": null}]]]}}}',
              '{"quote": "say \"hi\", ok", "nl": "line1\nline2", "crlf": "a\r\nb", "tab": "\t"}',
              '{"unicode": "\u00e9\u6771\u4eac\ud83d\ude80", "rtl": "\u05e9\u05dc\u05d5\u05dd"}',
              '{"big": 1e100, "small": -1e-100, "neg": -0, "exact": 0.1}',
              '{"formula": "=HYPERLINK(\"x\")", "plus": "+1", "at": "@a"}',
              '{"": "empty key", "a,b": "comma key", "{}": "brace key"}',
              '12345678901234567890.123456789', 'true']::jsonb[] AS jsonb_edges,
        -- json keeps its text as written: duplicate keys, whitespace and a \u0000 escape survive.
        ARRAY[NULL, '{}', '{"a": 1, "a": 2}', E'  {\n  "spaced" : [ 1 ,\t2 ] ,\n  "x":null }  ', '1e100',
              '"\u0000"', '[1, "two", null, true, {"x": []}]',
              '{"nested": {"deep": {"deeper": {"deepest": "\u00fc"}}}}',
              '{"multi": "line1\nline2", "quote": "\"q\""}', '"=1+1"']::json[] AS json_edges,
        ARRAY[NULL, '\x', '\x00', '\xff', '\x00ff00', '\x000000', '\x612c62220a0d']::bytea[] AS bytea_edges,
        -- Array edges are literals, parsed only on the rows that use them.
        ARRAY[NULL, '{}', '{NULL}', '{"a,b","say \"hi\"","{braces}","back\\slash",""}', '{NULL,x,NULL}',
              '{"NULL",null,"null"}', '{"=cmd","+x","-y","@z","|pipe"}', E'{"line\nbreak","cr\rlf"}',
              '{東京,🚀,"é ß Ü"}', '{" padded "}'] AS tags_edges,
        ARRAY[NULL, '{}', '{NULL}', '{-2147483648,2147483647,0}', '{{1,2},{3,4}}', '[0:2]={7,8,9}',
              '{NULL,1,NULL}', '{{{1}}}'] AS line_counts_edges,
        ARRAY[NULL, '0.0.0.0', '192.168.0.1/24', '255.255.255.255', '::1', '2001:db8::ff00:42:8329',
              '2001:db8::1/64', '::ffff:1.2.3.4', '::', 'fe80::1/10']::inet[] AS inet_edges,
        ARRAY[NULL, '0.0.0.0/0', '10.0.0.0/8', '255.255.255.255/32', '192.168.1.128/25', '::/0',
              '2001:db8::/32', '2001:db8:abcd:12::/64', '::1/128']::cidr[] AS cidr_edges,
        ARRAY[NULL, '00:00:00:00:00:00', '00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff',
              '08:00:2b:01:02:03']::macaddr[] AS macaddr_edges,
        ARRAY[NULL, '', E'First line\nSecond line\r\nThird line\rFourth line', 'Comma, separated, values',
              'She said "hello", then left', E'Tab\tseparated\tvalues',
              '=HYPERLINK("http://evil.example/","Click")', '+1+2', '-1+2', '@SUM(A1:A9)', '|calc',
              '   =1+1', '＝1+1 (full-width equals)', E'\t=1+1', E'\r=1+1', '🚀🔥👩‍💻 emoji note',
              '東京都渋谷区 配達', 'توصيل سريع, mixed עברית RTL', E'\u202Ereversed text', ' ', E'\\N', 'NULL',
              '"', ',', E'Ends with a newline\n', E'\r\n',
              E'A long note.\n' || repeat(E'Line with a comma, a "quote" and a CRLF.\r\n', 40)] AS notes_edges
)
INSERT INTO shop.orders (id, code, tenant_id, status, quantity, small, big, amount, ratio, score, paid,
                         customer, country, email, placed_on, placed_at, paid_at, pickup, window_length,
                         details, payload, signature, tags, line_counts, client_ip, network, device,
                         notes, internal_notes)
SELECT
    md5(%(seed)s::bigint::text || '-' || g.n)::uuid,
    CASE
        WHEN h.k <= cardinality(w.hostile_codes) THEN w.hostile_codes[h.k] || '-' || g.n
        WHEN h.k = 20 THEN 'abc-' || g.n
        WHEN h.k = 21 THEN 'ABC-' || (g.n - 1)
        WHEN h.k = 22 THEN 'über-' || g.n
        WHEN h.k = 23 THEN 'ÜBER-' || (g.n - 1)
        WHEN mod((h.a >> 1) & 1023, 10) < 7 THEN
            'ORD-' || CASE WHEN (h.a & 1) = 0 THEN to_hex((h.a >> 12) & 1048575)
                           ELSE upper(to_hex((h.a >> 12) & 1048575)) END || '-' || g.n
        ELSE w.code_prefixes[1 + ((h.a >> 32) & 15)] || to_hex((h.a >> 12) & 1048575) || '-' || g.n
    END,
    CASE
        WHEN h.t < 50 THEN 1
        WHEN h.t < 70 THEN 2
        WHEN h.t < 85 THEN 3
        WHEN h.t < 95 THEN 4
        ELSE 5
    END,
    CASE
        WHEN h.k <= cardinality(w.status_edges) THEN w.status_edges[h.k]
        WHEN h.s < 20 THEN w.statuses[1]
        WHEN h.s < 55 THEN w.statuses[2]
        WHEN h.s < 85 THEN w.statuses[3]
        WHEN h.s < 93 THEN w.statuses[4]
        WHEN h.s < 99 THEN w.statuses[5]
        ELSE w.statuses[6]
    END,
    CASE
        WHEN h.k <= cardinality(w.quantity_edges) THEN w.quantity_edges[h.k]
        ELSE 1 + mod(h.c & 1023, 20)::int
    END,
    CASE
        WHEN h.k <= cardinality(w.smallint_edges) THEN w.smallint_edges[h.k]
        ELSE (((h.c >> 10) & 65535) - 32768)::smallint
    END,
    CASE WHEN h.k <= cardinality(w.bigint_edges) THEN w.bigint_edges[h.k] ELSE h.d END,
    CASE
        WHEN h.k <= cardinality(w.numeric_edges) THEN w.numeric_edges[h.k]
        WHEN ((h.c >> 26) & 31) = 0 THEN -(((h.c >> 31) & 16777215)::numeric / 100)  -- refunds
        ELSE ((h.c >> 31) & 16777215)::numeric / 100
    END,
    -- Integers below 2^24 over a power of two: exact in real, the same on every platform.
    CASE
        WHEN h.k <= cardinality(w.real_edges) THEN w.real_edges[h.k]
        ELSE ((h.b >> 20) & 16777215)::real / 16777216
    END,
    CASE
        WHEN h.k <= cardinality(w.float8_edges) THEN w.float8_edges[h.k]
        ELSE (h.d >> 11)::float8 / 1099511627776
    END,
    CASE
        WHEN h.k <= cardinality(w.bool_edges) THEN w.bool_edges[h.k]
        WHEN ((h.b >> 44) & 63) = 0 THEN NULL
        ELSE h.s BETWEEN 20 AND 84  -- paid and shipped
    END,
    CASE
        WHEN h.k <= cardinality(w.customer_edges) THEN w.customer_edges[h.k]
        WHEN ((h.b >> 50) & 127) = 0 THEN NULL
        ELSE w.first_names[1 + ((h.b >> 4) & 15)] || ' ' || w.last_names[1 + ((h.b >> 8) & 15)]
    END,
    CASE
        WHEN h.k <= cardinality(w.country_edges) THEN w.country_edges[h.k]
        ELSE w.countries[1 + ((h.b >> 12) & 15)]
    END,
    CASE
        WHEN h.k <= cardinality(w.email_edges) THEN w.email_edges[h.k]
        WHEN ((h.b >> 57) & 31) = 0 THEN NULL
        ELSE w.mailboxes[1 + ((h.b >> 4) & 15)] || '.' || g.n || '@' || w.domains[1 + ((h.b >> 16) & 3)]
    END,
    CASE WHEN h.k <= cardinality(w.date_edges) THEN w.date_edges[h.k] ELSE date '2015-01-01' + v.day END,
    CASE
        WHEN h.k <= cardinality(w.timestamp_edges) THEN w.timestamp_edges[h.k]
        ELSE timestamp '2015-01-01 00:00:00' + (v.day * 86400 + v.second) * interval '1 second'
             + v.micro * interval '1 microsecond'
    END,
    CASE
        WHEN h.k <= cardinality(w.timestamptz_edges) THEN w.timestamptz_edges[h.k]
        WHEN NOT (h.s BETWEEN 20 AND 84) THEN NULL  -- only paid and shipped orders are paid
        ELSE timestamptz '2015-01-01 00:00:00+00'
             + (v.day * 86400 + v.second + 60 + ((h.c >> 40) & 262143)) * interval '1 second'
             + mod((h.c >> 4) & 1048575, 1000000) * interval '1 microsecond'
    END,
    CASE
        WHEN h.k <= cardinality(w.time_edges) THEN w.time_edges[h.k]
        WHEN mod(g.n, 5) = 0 THEN time '08:00:00' + mod((h.d >> 3) & 65535, 43200) * interval '1 second'
        ELSE time '08:00:00' + mod((h.d >> 3) & 65535, 43200) * interval '1 second'
             + mod((h.e >> 44) & 1048575, 1000000) * interval '1 microsecond'
    END,
    CASE
        WHEN h.k <= cardinality(w.interval_edges) THEN w.interval_edges[h.k]
        ELSE ((h.d >> 20) & 31) * interval '1 day' + ((h.d >> 25) & 1023) * interval '1 minute'
    END,
    CASE
        WHEN h.k <= cardinality(w.jsonb_edges) THEN w.jsonb_edges[h.k]
        WHEN ((h.f >> 58) & 63) = 0 THEN NULL
        -- Parsing built text is faster than jsonb_build_object; the pieces need no escaping.
        ELSE ('{"items": ' || (1 + ((h.f >> 2) & 7)) || ', "channel": "' || w.channels[1 + (h.f & 3)]
              || '", "gift": ' || (((h.f >> 5) & 3) = 0) || ', "lines": [' || ((h.f >> 8) & 255) || ', '
              || ((h.f >> 16) & 255) || ']}')::jsonb
    END,
    CASE
        WHEN h.k <= cardinality(w.json_edges) THEN w.json_edges[h.k]
        ELSE ('{"n": ' || g.n || ', "ref": "' || to_hex((h.f >> 25) & 16777215) || '"}')::json
    END,
    CASE
        WHEN h.k <= cardinality(w.bytea_edges) THEN w.bytea_edges[h.k]
        ELSE int8send(h.b) || int8send(h.f)  -- 16 bytes; int8send is big-endian everywhere
    END,
    CASE
        WHEN h.k <= cardinality(w.tags_edges) THEN w.tags_edges[h.k]::text[]
        ELSE CASE (h.f >> 49) & 3
                 WHEN 0 THEN '{}'::text[]
                 WHEN 1 THEN ARRAY[w.tag_words[1 + ((h.f >> 51) & 7)]]
                 ELSE ARRAY[w.tag_words[1 + ((h.f >> 51) & 7)], w.tag_words[1 + ((h.f >> 54) & 7)]]
             END
    END,
    CASE
        WHEN h.k <= cardinality(w.line_counts_edges) THEN w.line_counts_edges[h.k]::integer[]
        ELSE ARRAY[1 + ((h.e >> 1) & 7), 1 + ((h.e >> 4) & 7)]::integer[]
    END,
    CASE
        WHEN h.k <= cardinality(w.inet_edges) THEN w.inet_edges[h.k]
        WHEN ((h.e >> 7) & 15) = 0 THEN inet '2001:db8::' + ((h.e >> 11) & 4294967295)  -- IPv6 now and then
        ELSE inet '10.0.0.0' + ((h.e >> 11) & 16777215)
    END,
    CASE
        WHEN h.k <= cardinality(w.cidr_edges) THEN w.cidr_edges[h.k]
        ELSE network(set_masklen(inet '10.0.0.0' + ((h.e >> 11) & 16777215), 16 + ((h.e >> 43) & 15)::int))
    END,
    CASE
        WHEN h.k <= cardinality(w.macaddr_edges) THEN w.macaddr_edges[h.k]
        -- Through macaddr8: its parser is several times faster than macaddr's, same value.
        ELSE lpad(to_hex((h.e >> 8) & 281474976710655), 12, '0')::macaddr8::macaddr
    END,
    CASE
        WHEN h.k <= cardinality(w.notes_edges) THEN w.notes_edges[h.k]
        WHEN ((h.e >> 56) & 7) = 0 THEN NULL
        ELSE w.openers[1 + ((h.e >> 2) & 7)] || ', ' || w.closers[1 + ((h.e >> 5) & 7)]
    END,
    -- Never NULL, and easy to spot: an export that leaks it shows 'INTERNAL'.
    'INTERNAL margin ' || mod((h.f >> 30) & 1023, 60) || ', ' || w.reviewers[1 + ((h.f >> 40) & 3)]
FROM generate_series(1, %(rows)s::bigint) AS g(n)
CROSS JOIN w
CROSS JOIN LATERAL (
    SELECT x.*,
           mod((x.b >> 24) & 1048575, 100) AS t,  -- tenant, percent
           mod((x.b >> 34) & 1048575, 100) AS s   -- status, percent
    FROM (SELECT nullif(mod(g.n, 997), 0) AS k,
                 hashtextextended(g.n::text, %(seed)s::bigint) AS a,
                 hashtextextended('b' || g.n, %(seed)s::bigint) AS b,
                 hashtextextended('c' || g.n, %(seed)s::bigint) AS c,
                 hashtextextended('d' || g.n, %(seed)s::bigint) AS d,
                 hashtextextended('e' || g.n, %(seed)s::bigint) AS e,
                 hashtextextended('f' || g.n, %(seed)s::bigint) AS f
          OFFSET 0) AS x  -- OFFSET 0: compute each hash once per row, not once per use
) AS h
CROSS JOIN LATERAL (
    SELECT mod((h.a >> 20) & 1048575, 5844)::int AS day,  -- 2015-01-01 .. 2030-12-31
           mod((h.a >> 40) & 1048575, 86400) AS second,
           CASE WHEN mod(g.n, 7) = 0 THEN 0 ELSE mod((h.d >> 30) & 1048575, 1000000) END AS micro
) AS v
