"""Settings: the only module that reads the environment.

Every variable is prefixed ``SPILLWAY_`` and has a default that points at the local stack
(``make up``), so a fresh checkout needs no configuration. Everything else in the project
receives a :class:`Settings` instance instead of reading ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "SPILLWAY_"
# The datasets file the repository ships (the demo tables): what make up, make demo and the tests use.
DEFAULT_DATASETS_FILE = str(Path(__file__).resolve().parent.parent / "deploy" / "datasets.yml")

# Defaults, each with its reason.
DEFAULT_PG_PORT = 5432  # PostgreSQL's standard port.
DEFAULT_REDIS_PORT = 6379  # Redis's standard port.
DEFAULT_S3_PORT = 9000  # MinIO's standard port; the local moto server uses it too.
DEFAULT_API_PORT = 8000  # gunicorn's conventional port.
DEFAULT_INLINE_MAX_ROWS = 10_000  # Small enough to answer inside one HTTP request.
# Lower bound of a non-last part (S3's minimum is 5 MiB). 16 MiB rather than 8: each chunk job
# costs a worker about 40 ms of CPU besides its bytes (fork, connections, first S3 call), and a
# 1M-row export in 10 parts instead of 19 took 23 % less worker CPU and 7 % less time (README).
DEFAULT_PART_MIN_BYTES = 16 * 1024 * 1024
DEFAULT_STATEMENT_TIMEOUT_MS = 120_000  # No export query may run longer than this.
DEFAULT_DOWNLOAD_URL_TTL_S = 900  # Presigned URLs live 15 minutes.
DEFAULT_EXPORT_TTL_S = 24 * 3600  # Completed objects are kept a day.
DEFAULT_CHUNK_JOB_TIMEOUT_S = 600  # RQ hard limit for one chunk; a chunk takes seconds.
DEFAULT_CONTROL_JOB_TIMEOUT_S = 300  # Planning and finalizing are short.
DEFAULT_MAX_CONCURRENT_READS = 4  # Global cap on chunk queries against the source database.
DEFAULT_MAX_RUNNING_PER_OWNER = 2  # Per-owner cap on running exports.
DEFAULT_MAX_CHUNKS_IN_FLIGHT = 4  # Per-export cap on chunk jobs queued or running.
DEFAULT_LEASE_S = 30  # A chunk whose worker stops renewing is re-run after this.
DEFAULT_RECONCILE_INTERVAL_S = 5.0  # Recovery of a dead chunk takes at most lease + this.
DEFAULT_LIVENESS_INTERVAL_S = 1.0  # How often the reconciler looks for chunks whose process died.
DEFAULT_JANITOR_GRACE_S = 600  # An upload no export owns is aborted once this old.
DEFAULT_RETRY_DELAYS_S = "2,5,15"  # Backoff of transient failures: three retries within ~22 s.
DEFAULT_AUTH_CACHE_S = 30  # A valid key is trusted this long per API process (polls skip a query).
DEFAULT_HEALTH_TIMEOUT_S = 2.0  # A probe slower than this counts as down.
DEFAULT_API_PROCESSES = 2  # gunicorn processes; with 4 threads each, the best poll tail on 2 cores.
DEFAULT_API_THREADS = 4  # gunicorn threads per process (gthread): inline streams and polls share them.
DEFAULT_RQ_WORKERS = 2  # RQ worker processes `make up` starts locally.
DEFAULT_DASHBOARD_PORT = 9181  # rq-dashboard's own default port.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # A request body above this is refused (413): a request needs a few KB.
DEFAULT_BODY_TIMEOUT_S = 10.0  # A body that has not fully arrived after this is refused (408).
DEFAULT_COUNT_TIMEOUT_MS = 2000  # The count behind the tier choice; past it, auto goes async.
DEFAULT_API_STATEMENT_TIMEOUT_MS = 5000  # Every state query of the API (polls, lists) is short.
DEFAULT_INLINE_SLOT_WAIT_S = 2.0  # An inline export waits this long for a read slot before going async (or 429).
DEFAULT_XLSX_SHEET_ROWS = 1_048_575  # Excel's 1,048,576 rows a sheet, minus the header row.
DEFAULT_XLSX_MAX_ROWS = 10_000_000  # Ten sheets: beyond this a spreadsheet is the wrong tool.
DEFAULT_EXPORTS_PER_MINUTE = 30  # POST /exports per key a minute (a moving window); 0: no limit.
DEFAULT_INLINE_BYTES_PER_HOUR = 2_000_000_000  # Inline bytes per key an hour; past it auto goes async; 0: no limit.
DEFAULT_MAX_QUEUED_PER_OWNER = 20  # Exports of one owner waiting to start; 0: no cap.
DEFAULT_WEBHOOK_RETRY_DELAYS_S = "10,60,300,1800,7200"  # Six attempts within about 2.6 hours.
LOG_FORMATS = ("text", "json")  # SPILLWAY_LOG_FORMAT's choices (shared/logs.py)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_FORMAT = "text"  # Readable in a terminal; "json" for a log pipeline (one object a line).
DEFAULT_LOG_LEVEL = "INFO"  # A line per job and per request; DEBUG adds the libraries' detail.
DEFAULT_WEBHOOK_TIMEOUT_S = 10.0  # A receiver that has not answered after this is retried later.
MAX_XLSX_SHEETS = 500  # half of an export's chunks at most (shared/planning.py MAX_CHUNKS)
S3_MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum size of a non-last multipart part.
# How S3 checks a chunk's bytes (SPILLWAY_S3_PART_CHECKSUM): "md5" sends Content-MD5, which every
# S3-compatible store verifies; "crc32" sends x-amz-checksum-crc32 (AWS S3, MinIO), the CRC-32
# the workers take anyway, which saves them the MD5 (about 1.3 s of CPU per GB), and lets the
# finalizer check the object's checksum against the parts' CRCs.
PART_CHECKSUMS = ("md5", "crc32")


class SettingsError(ValueError):
    """Raised when an environment variable is present but unusable."""


@dataclass(frozen=True)
class Settings:
    """All configuration of API, workers and tools; see the README for each variable."""

    # URLs may carry passwords: never in a repr (a log line or a traceback).
    source_database_url: str = field(
        default=f"postgresql://spillway:spillway@127.0.0.1:{DEFAULT_PG_PORT}/spillway", repr=False
    )
    state_database_url: str = field(
        default=f"postgresql://spillway:spillway@127.0.0.1:{DEFAULT_PG_PORT}/spillway", repr=False
    )
    redis_url: str = field(default=f"redis://127.0.0.1:{DEFAULT_REDIS_PORT}/0", repr=False)
    s3_endpoint_url: str = f"http://127.0.0.1:{DEFAULT_S3_PORT}"
    s3_public_endpoint_url: str = f"http://127.0.0.1:{DEFAULT_S3_PORT}"
    s3_bucket: str = "spillway-exports"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = "spillway"
    s3_secret_access_key: str = field(default="spillway-secret", repr=False)
    s3_prefix: str = "exports/"
    s3_part_checksum: str = "md5"
    datasets_file: str = DEFAULT_DATASETS_FILE
    queue_prefix: str = "spillway"
    inline_max_rows: int = DEFAULT_INLINE_MAX_ROWS
    part_min_bytes: int = DEFAULT_PART_MIN_BYTES
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS
    download_url_ttl_s: int = DEFAULT_DOWNLOAD_URL_TTL_S
    export_ttl_s: int = DEFAULT_EXPORT_TTL_S
    chunk_job_timeout_s: int = DEFAULT_CHUNK_JOB_TIMEOUT_S
    control_job_timeout_s: int = DEFAULT_CONTROL_JOB_TIMEOUT_S
    max_concurrent_reads: int = DEFAULT_MAX_CONCURRENT_READS
    max_running_per_owner: int = DEFAULT_MAX_RUNNING_PER_OWNER
    max_chunks_in_flight: int = DEFAULT_MAX_CHUNKS_IN_FLIGHT
    lease_s: int = DEFAULT_LEASE_S
    retry_delays_s: str = DEFAULT_RETRY_DELAYS_S
    reconcile_interval_s: float = DEFAULT_RECONCILE_INTERVAL_S
    liveness_interval_s: float = DEFAULT_LIVENESS_INTERVAL_S
    janitor_grace_s: int = DEFAULT_JANITOR_GRACE_S
    health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S
    auth_cache_s: int = DEFAULT_AUTH_CACHE_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    count_timeout_ms: int = DEFAULT_COUNT_TIMEOUT_MS
    api_statement_timeout_ms: int = DEFAULT_API_STATEMENT_TIMEOUT_MS
    inline_slot_wait_s: float = DEFAULT_INLINE_SLOT_WAIT_S
    xlsx_sheet_rows: int = DEFAULT_XLSX_SHEET_ROWS
    xlsx_max_rows: int = DEFAULT_XLSX_MAX_ROWS
    exports_per_minute: int = DEFAULT_EXPORTS_PER_MINUTE
    inline_bytes_per_hour: int = DEFAULT_INLINE_BYTES_PER_HOUR
    max_queued_per_owner: int = DEFAULT_MAX_QUEUED_PER_OWNER
    webhook_allow_private: bool = False
    webhook_allow_http: bool = False
    webhook_retry_delays_s: str = DEFAULT_WEBHOOK_RETRY_DELAYS_S
    webhook_timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    api_processes: int = DEFAULT_API_PROCESSES
    api_threads: int = DEFAULT_API_THREADS
    rq_workers: int = DEFAULT_RQ_WORKERS
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    dashboard_user: str = "admin"
    dashboard_password: str = field(default="", repr=False)
    log_format: str = DEFAULT_LOG_FORMAT
    log_level: str = DEFAULT_LOG_LEVEL

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"{PREFIX}LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.s3_part_checksum not in PART_CHECKSUMS:
            raise SettingsError(
                f"{PREFIX}S3_PART_CHECKSUM must be one of {', '.join(PART_CHECKSUMS)}, got {self.s3_part_checksum!r}"
            )
        if self.log_level.upper() not in LOG_LEVELS:
            raise SettingsError(f"{PREFIX}LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.xlsx_sheet_rows > DEFAULT_XLSX_SHEET_ROWS:
            raise SettingsError(f"{PREFIX}XLSX_SHEET_ROWS must be at most {DEFAULT_XLSX_SHEET_ROWS} (Excel's sheet)")
        if self.xlsx_sheet_rows > 0 and -(-self.xlsx_max_rows // self.xlsx_sheet_rows) > MAX_XLSX_SHEETS:
            raise SettingsError(
                f"{PREFIX}XLSX_MAX_ROWS / {PREFIX}XLSX_SHEET_ROWS allows more than {MAX_XLSX_SHEETS} sheets"
                " (each sheet is at least one chunk of the 1,000 an export may have)"
            )
        if self.part_min_bytes < S3_MIN_PART_BYTES:
            raise SettingsError(f"{PREFIX}PART_MIN_BYTES must be at least {S3_MIN_PART_BYTES} (S3's minimum part size)")
        for name in (
            "inline_max_rows",
            "statement_timeout_ms",
            "max_concurrent_reads",
            "max_running_per_owner",
            "max_chunks_in_flight",
            "lease_s",
            "rq_workers",
            "api_processes",
            "api_threads",
            "max_body_bytes",
            "count_timeout_ms",
            "api_statement_timeout_ms",
            "xlsx_sheet_rows",
            "xlsx_max_rows",
        ):
            if getattr(self, name) < 0 or (name != "inline_max_rows" and getattr(self, name) == 0):
                raise SettingsError(f"{PREFIX}{name.upper()} must be positive, got {getattr(self, name)}")
        for name in ("exports_per_minute", "inline_bytes_per_hour", "max_queued_per_owner"):
            if getattr(self, name) < 0:
                raise SettingsError(
                    f"{PREFIX}{name.upper()} must be 0 (no limit) or positive, got {getattr(self, name)}"
                )
        try:
            hook_delays = self.webhook_retry_delays
        except ValueError:
            hook_delays = (-1.0,)
        if any(d < 0 for d in hook_delays) or self.webhook_timeout_s <= 0:
            raise SettingsError(
                f"{PREFIX}WEBHOOK_RETRY_DELAYS_S must be comma-separated seconds and {PREFIX}WEBHOOK_TIMEOUT_S"
                f" positive, got {self.webhook_retry_delays_s!r} and {self.webhook_timeout_s}"
            )
        try:
            delays = self.retry_delays
        except ValueError:
            delays = (-1,)
        if any(d < 0 for d in delays):
            raise SettingsError(f"{PREFIX}RETRY_DELAYS_S must be comma-separated seconds, got {self.retry_delays_s!r}")

    @property
    def retry_delays(self) -> tuple[int, ...]:
        """Seconds to wait before each retry of a failed job."""
        return tuple(int(d) for d in self.retry_delays_s.split(",") if d.strip())

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        """Seconds before each retry of a webhook delivery (attempts: one more than these)."""
        return tuple(float(d) for d in self.webhook_retry_delays_s.split(",") if d.strip())

    @property
    def queue_control(self) -> str:
        """Queue of short jobs (plan, finalize), served before chunks so exports start quickly."""
        return f"{self.queue_prefix}-control"

    @property
    def queue_webhooks(self) -> str:
        """Queue of webhook delivery attempts: served last, so a slow receiver never holds up an export."""
        return f"{self.queue_prefix}-webhooks"

    @property
    def webhook_attempts(self) -> int:
        """Attempts a delivery gets: the first and one per retry delay."""
        return len(self.webhook_retry_delays) + 1

    @property
    def queue_chunks(self) -> str:
        """Queue of chunk jobs (one COPY and one part upload each)."""
        return f"{self.queue_prefix}-chunks"

    def to_env(self) -> dict[str, str]:
        """The ``SPILLWAY_*`` variables that reproduce these settings in a child process."""
        return {f"{PREFIX}{f.name.upper()}": str(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed (tests and tools use this)."""
        return dataclasses.replace(self, **changes)


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _convert(name: str, raw: str, kind: type) -> object:
    if kind is int:
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise SettingsError(f"{PREFIX}{name.upper()} must be an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name.upper()} must be a number, got {raw!r}") from None
    if kind is bool:
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise SettingsError(f"{PREFIX}{name.upper()} must be true or false, got {raw!r}")
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``SPILLWAY_*`` variables, defaults for the rest.

    Args:
        environ: the mapping to read; ``os.environ`` when omitted.

    Raises:
        SettingsError: a variable is set to a value of the wrong type or out of range.
    """
    env = os.environ if environ is None else environ
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(PREFIX + f.name.upper())
        if raw is not None and raw != "":
            values[f.name] = _convert(f.name, raw, kinds[str(f.type)])
    return Settings(**values)
