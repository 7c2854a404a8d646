"""Settings come from SPILLWAY_* variables, with defaults for the local stack."""

from __future__ import annotations

import pytest

from shared.settings import S3_MIN_PART_BYTES, Settings, SettingsError, load_settings


def test_defaults_point_at_the_local_stack():
    s = load_settings({})
    assert s == Settings()
    assert "127.0.0.1:5432" in s.state_database_url
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.s3_endpoint_url == "http://127.0.0.1:9000"
    assert s.inline_max_rows == 10_000
    assert s.s3_part_checksum == "md5"  # the one every S3-compatible store checks


def test_environment_overrides_with_types():
    s = load_settings(
        {
            "SPILLWAY_INLINE_MAX_ROWS": "500",
            "SPILLWAY_S3_BUCKET": "b",
            "SPILLWAY_HEALTH_TIMEOUT_S": "0.5",
            "UNRELATED": "x",
        }
    )
    assert (s.inline_max_rows, s.s3_bucket, s.health_timeout_s) == (500, "b", 0.5)


def test_empty_variable_means_default():
    assert load_settings({"SPILLWAY_S3_BUCKET": ""}).s3_bucket == Settings().s3_bucket


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SPILLWAY_INLINE_MAX_ROWS": "ten"}, "SPILLWAY_INLINE_MAX_ROWS must be an integer"),
        ({"SPILLWAY_PART_MIN_BYTES": str(S3_MIN_PART_BYTES - 1)}, "SPILLWAY_PART_MIN_BYTES must be at least"),
        ({"SPILLWAY_MAX_CONCURRENT_READS": "0"}, "SPILLWAY_MAX_CONCURRENT_READS must be positive"),
        ({"SPILLWAY_S3_PART_CHECKSUM": "sha1"}, "SPILLWAY_S3_PART_CHECKSUM must be one of md5, crc32, got 'sha1'"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_settings_are_frozen_and_hashable():
    s = Settings()
    with pytest.raises(AttributeError):
        s.s3_bucket = "other"  # type: ignore[misc]
    assert hash(s) == hash(Settings())
    assert s.replace(s3_bucket="x").s3_bucket == "x"
