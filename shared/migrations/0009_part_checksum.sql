-- How S3 checks the bytes of an export's chunks (SPILLWAY_S3_PART_CHECKSUM when it was planned):
-- 'md5' (Content-MD5) or 'crc32' (x-amz-checksum-crc32; a plain format's multipart upload is
-- then created with CRC32 checksums, which every part and the completion must carry). Kept
-- with the export, so its chunks and finalizer agree even while the setting changes in a deploy.

ALTER TABLE exports ADD COLUMN IF NOT EXISTS part_checksum text NOT NULL DEFAULT 'md5'
    CHECK (part_checksum IN ('md5', 'crc32'));
