-- Output formats (gzip, JSON Lines, XLSX): what a chunk records beyond its part.
--
-- raw_bytes / raw_crc32: the size and CRC-32 of the chunk's bytes before compression (the
-- worksheet XML of an XLSX chunk, the CSV or JSON Lines of a gzip one). An XLSX sheet's ZIP
-- data descriptor needs the CRC-32 and size of the whole uncompressed sheet: the finalizer
-- combines them from its chunks. NULL for uncompressed formats.
-- layout: where an XLSX chunk sits in the workbook, fixed by the planner:
-- {"sheet": n, "first": bool, "last": bool, "zip64": bool} (first/last of its sheet; whether
-- the sheet's entry uses ZIP64 sizes). NULL for the other formats.

ALTER TABLE export_chunks ADD COLUMN IF NOT EXISTS raw_bytes bigint CHECK (raw_bytes >= 0);
ALTER TABLE export_chunks ADD COLUMN IF NOT EXISTS raw_crc32 bigint
    CHECK (raw_crc32 BETWEEN 0 AND 4294967295);
ALTER TABLE export_chunks ADD COLUMN IF NOT EXISTS layout jsonb;
