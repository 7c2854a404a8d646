"""The CLI client's pure parts, and its flows against a tiny in-process fake API (no services)."""

from __future__ import annotations

import csv
import io
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from client import cli
from client.api import ApiClient, ApiConnectionError, ApiError, CancelUnsupportedError
from client.export import export_request, run_export, safe_filename
from client.filters import FilterSyntaxError, build_filters, column_types, parse_filter
from client.progress import ProgressPrinter, SilentProgress, format_bytes, format_duration, format_export_progress
from client.verify import CsvCheckError, count_csv_records, verify_file

TYPES = {
    "id": "bigint",
    "price": "numeric",
    "quantity": "integer",
    "category": "text",
    "name": "text",
    "created_at": "timestamptz",
}


# --- filters -------------------------------------------------------------------------------


def test_in_splits_text_values_on_commas():
    assert parse_filter("category=in:books,toys", TYPES) == ("category", "in", ["books", "toys"])


def test_numbers_are_parsed_only_for_numeric_columns():
    assert parse_filter("price=gte:10", TYPES) == ("price", "gte", 10)
    assert parse_filter("price=lt:49.5", TYPES) == ("price", "lt", 49.5)
    assert parse_filter("id=in:1, 2,3", TYPES) == ("id", "in", [1, 2, 3])
    assert parse_filter("name=eq:10", TYPES) == ("name", "eq", "10")


def test_no_operator_means_eq_and_colons_stay_in_the_value():
    assert parse_filter("name=ultra", TYPES) == ("name", "eq", "ultra")
    assert parse_filter("name=a:b", TYPES) == ("name", "eq", "a:b")
    assert parse_filter("name=eq:in:x", TYPES) == ("name", "eq", "in:x")
    assert parse_filter("name=contains:ultra", TYPES) == ("name", "contains", "ultra")


def test_timestamps_stay_strings():
    assert parse_filter("created_at=gte:2024-01-01T00:00:00+00:00", TYPES) == (
        "created_at",
        "gte",
        "2024-01-01T00:00:00+00:00",
    )


def test_unknown_column_is_sent_as_string_for_the_api_to_judge():
    assert parse_filter("colour=in:1,2", TYPES) == ("colour", "in", ["1", "2"])


@pytest.mark.parametrize(
    "expression", ["price", "=gte:1", "price=gte:ten", "price=gte:nan", "price=in:", "id=in:1,,2", "quantity=inf"]
)
def test_malformed_filters_are_refused(expression):
    with pytest.raises(FilterSyntaxError):
        parse_filter(expression, TYPES)


def test_conditions_on_one_column_combine_and_json_is_applied_last():
    filters = build_filters(
        ["price=gte:10", "price=lt:50", "category=in:books,toys"],
        '{"price": {"lt": 40}, "name": {"contains": "ultra"}}',
        TYPES,
    )
    assert filters == {
        "price": {"gte": 10, "lt": 40},
        "category": {"in": ["books", "toys"]},
        "name": {"contains": "ultra"},
    }


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"price": 5}'])
def test_bad_filter_json_is_refused(text):
    with pytest.raises(FilterSyntaxError):
        build_filters([], text, TYPES)


def test_column_types_come_from_the_datasets_answer():
    datasets = [
        {"name": "other", "columns": [{"name": "x", "type": "text"}]},
        {"name": "products", "columns": [{"name": "price", "type": "numeric", "filters": ["gte"]}]},
    ]
    assert column_types(datasets, "products") == {"price": "numeric"}
    assert column_types(datasets, "missing") == {}


# --- CSV record counting ----------------------------------------------------------------------

HOSTILE_ROWS = [
    ["1", "plain", ""],
    ["2", "line one\nline two", "x"],
    ["3", "cr\r\nlf", '"quoted", comma'],
    ["4", "=SUM(A1)", "ünïcødé"],
    ["5", "", "trailing\n"],
]


def write_csv(path: Path, rows: list[list[str]], bom: bool = False) -> Path:
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "name", "description"])
        writer.writerows(rows)
    return path


def test_embedded_newlines_do_not_count_as_records(tmp_path):
    path = write_csv(tmp_path / "a.csv", HOSTILE_ROWS)
    assert path.read_bytes().count(b"\n") > len(HOSTILE_ROWS) + 1  # a line count would be wrong
    assert count_csv_records(path) == len(HOSTILE_ROWS)


def test_a_bom_is_not_data(tmp_path):
    path = write_csv(tmp_path / "bom.csv", HOSTILE_ROWS[:2], bom=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert count_csv_records(path) == 2


def test_header_only_and_empty_files_hold_no_records(tmp_path):
    assert count_csv_records(write_csv(tmp_path / "h.csv", [])) == 0
    (tmp_path / "empty.csv").write_bytes(b"")
    assert count_csv_records(tmp_path / "empty.csv") == 0


def test_an_all_null_single_column_row_is_an_empty_line_and_still_a_record(tmp_path):
    (tmp_path / "n.csv").write_bytes(b"description\nx\n\n\ny\n")
    assert count_csv_records(tmp_path / "n.csv") == 4


def test_malformed_csv_and_bad_utf8_fail_instead_of_counting(tmp_path):
    (tmp_path / "bad.csv").write_bytes(b'a,b\n1,"x"y\n')
    with pytest.raises(CsvCheckError):
        count_csv_records(tmp_path / "bad.csv")
    (tmp_path / "latin1.csv").write_bytes(b"a\ncaf\xe9\n")
    with pytest.raises(CsvCheckError):
        count_csv_records(tmp_path / "latin1.csv")


def test_verify_file_reports_each_mismatch(tmp_path):
    path = write_csv(tmp_path / "v.csv", HOSTILE_ROWS)
    size = path.stat().st_size
    assert verify_file(path, len(HOSTILE_ROWS), size).ok
    check = verify_file(path, len(HOSTILE_ROWS) + 1, size + 1)
    assert not check.ok and len(check.problems) == 2
    assert "row mismatch" in check.problems[1] and "size mismatch" in check.problems[0]
    assert not verify_file(path, None).ok  # no figure to check against is not a pass


def test_verify_file_checks_the_crc32_of_every_byte(tmp_path):
    path = write_csv(tmp_path / "c.csv", HOSTILE_ROWS, bom=True)
    crc = f"{zlib.crc32(path.read_bytes()):08x}"
    good = verify_file(path, len(HOSTILE_ROWS), checksum={"algorithm": "crc32", "value": crc.upper()})
    assert good.ok and good.checksum_found == crc
    wrong = f"{int(crc, 16) ^ 1:08x}"
    bad = verify_file(path, len(HOSTILE_ROWS), checksum={"algorithm": "crc32", "value": wrong})
    assert not bad.ok and bad.problems == [f"checksum mismatch: the file's CRC32 is {crc}, the export's {wrong}"]
    unknown = verify_file(path, len(HOSTILE_ROWS), checksum={"algorithm": "sha3", "value": "x"})
    assert unknown.ok and unknown.checksum_found is None  # a newer server's algorithm is not a failure


# --- progress -----------------------------------------------------------------------------------


def export_json(status="running", total=1_000_000, done=420_000, percent=42.0, parts=(5, 12)):
    return {
        "id": "e1",
        "status": status,
        "progress": {
            "total_rows": total,
            "rows_done": done,
            "percent": percent,
            "parts_done": parts[0],
            "parts_total": parts[1],
        },
    }


def test_progress_line_shows_percent_rows_parts_and_elapsed():
    line = format_export_progress(export_json(), 75.2)
    assert line.startswith("running [" + "#" * 10 + "-" * 14 + "]")
    for part in (" 42.0%", "420,000/1,000,000 rows", "parts 5/12", "1m15s"):
        assert part in line


def test_progress_line_before_planning_says_what_it_waits_for():
    assert "waiting for a worker" in format_export_progress(export_json("queued", total=None), 1.0)
    assert "#" * 24 in format_export_progress(export_json("completed", done=1_000_000, percent=100.0), 3.0)


def test_progress_line_while_a_plan_is_streamed_shows_the_rows_so_far():
    line = format_export_progress(export_json(total=None, done=230_000, percent=0.0, parts=(3, None)), 2.0)
    assert "planning; 230,000 rows so far  parts 3" in line and "/" not in line.split("]")[1]
    assert "planning" in format_export_progress(export_json(total=None, done=0, parts=(0, None)), 0.5)


def test_units():
    assert format_bytes(999) == "999 B" and format_bytes(1_500_000) == "1.5 MB"
    assert format_duration(4.31) == "4.3s" and format_duration(3725) == "1h02m05s"


def test_interactive_progress_redraws_one_line():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, interactive=True)
    printer.update("a long first line")
    printer.update("short")
    printer.finish("done")
    assert stream.getvalue() == "\ra long first line" + "\rshort" + " " * 12 + "\rdone " + "\n"


def test_non_interactive_progress_prints_a_line_every_interval_and_the_last_one():
    now = [0.0]
    stream = io.StringIO()
    printer = ProgressPrinter(stream, interactive=False, interval=5.0, clock=lambda: now[0])
    for second, text in enumerate(["p0", "p1", "p2", "p3", "p4", "p5", "p6"]):
        now[0] = float(second)
        printer.update(text)
    printer.finish()
    assert stream.getvalue().splitlines() == ["p0", "p5", "p6"]


# --- flows against a fake API ---------------------------------------------------------------------

CSV_BODY = b'id,name\n1,"two\nlines"\n2,plain\n'


class FakeApi(BaseHTTPRequestHandler):
    """Answers like Spillway: async export e1 runs for one poll, then completes; /s3 is the 'storage'."""

    state: dict = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status, body=b"", headers=None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status, obj, headers=None):
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def do_POST(self):
        s = self.state
        s["requests"].append(("POST", self.path, self.headers.get("Authorization")))
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
        if self.path == "/exports":
            s["body"] = body
            if body.get("columns") == ["nope"]:
                return self._json(
                    400, {"error": {"code": "invalid_request", "message": "unknown column 'nope'", "field": "columns"}}
                )
            if body["delivery"] == "inline":
                return self._send(
                    200,
                    CSV_BODY,
                    {
                        "Content-Type": "text/csv; charset=utf-8",
                        "X-Spillway-Rows": "2",
                        "Content-Disposition": 'attachment; filename="../inline.csv"',
                    },
                )
            return self._json(202, self._export("queued"), {"Location": "/exports/e1"})
        self._json(404, {"error": {"code": "not_found", "message": "The requested URL was not found"}})

    def do_GET(self):
        s = self.state
        s["requests"].append(("GET", self.path, self.headers.get("Authorization")))
        if self.path == "/exports/e1":
            s["polls"] += 1
            return self._json(200, self._export("running" if s["polls"] < 2 else "completed"))
        if self.path == "/exports/e1/download":
            return self._send(302, b"", {"Location": f"{s['base']}/s3/object"})
        if self.path == "/s3/object":
            return self._send(200, CSV_BODY)
        self._json(404, {"error": {"code": "not_found", "message": "no such thing"}})

    def _export(self, status):
        s = self.state
        done = status == "completed"
        return {
            "id": "e1",
            "status": status,
            "finished": status not in ("queued", "running"),
            "dataset": "products",
            "filename": "products.csv",
            "error": None,
            "object_bytes": s["object_bytes"] if done else None,
            "progress": {
                "total_rows": s["total_rows"],
                "rows_done": s["total_rows"] if done else 1,
                "parts_total": 1,
                "parts_done": 1 if done else 0,
                "bytes_done": 0,
                "percent": 100.0 if done else 50.0,
            },
            "checksum": s["checksum"] if done else None,
            "download": {"url": f"{s['base']}/s3/object", "expires_at": "x"} if done and not s["gone"] else None,
            "download_error": {"code": "object_missing", "message": "the file of export e1 is no longer in storage"}
            if done and s["gone"]
            else None,
        }


@pytest.fixture
def fake_api() -> Iterator[dict]:
    """A fake Spillway on a free loopback port; yields its shared state."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    base = f"http://127.0.0.1:{server.server_port}"
    FakeApi.state = {
        "base": base,
        "requests": [],
        "polls": 0,
        "total_rows": 2,
        "object_bytes": len(CSV_BODY),
        "checksum": {"algorithm": "crc32", "value": f"{zlib.crc32(CSV_BODY):08x}"},
        "gone": False,
    }
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield FakeApi.state
    server.shutdown()
    server.server_close()


def test_async_export_is_polled_downloaded_without_the_key_and_verified(fake_api, tmp_path):
    api = ApiClient(fake_api["base"], "sw_secret")
    outcome = run_export(
        api, export_request("products", delivery="async"), tmp_path / "out.csv", SilentProgress(), poll_interval=0.01
    )
    assert outcome.ok, outcome.problems
    assert (outcome.rows, outcome.bytes, outcome.export_id) == (2, len(CSV_BODY), "e1")
    assert (tmp_path / "out.csv").read_bytes() == CSV_BODY
    auth = {path: key for _, path, key in fake_api["requests"]}
    assert auth["/exports"] == "Bearer sw_secret" and auth["/s3/object"] is None


def test_a_row_or_size_mismatch_fails_the_export(fake_api, tmp_path):
    fake_api["total_rows"], fake_api["object_bytes"] = 3, len(CSV_BODY) + 1
    api = ApiClient(fake_api["base"], "k")
    outcome = run_export(
        api, export_request("products", delivery="async"), tmp_path / "out.csv", SilentProgress(), poll_interval=0.01
    )
    assert not outcome.ok and len(outcome.problems) == 2


def test_the_checksum_is_verified_and_a_wrong_one_fails_the_export(fake_api, tmp_path, capsys):
    api = ApiClient(fake_api["base"], "k")
    good = run_export(
        api, export_request("products", delivery="async"), tmp_path / "good.csv", SilentProgress(), poll_interval=0.01
    )
    assert good.ok and good.checksum == fake_api["checksum"]["value"]
    assert any(line.startswith("crc32") and "(verified)" in line for line in good.summary_lines())

    fake_api["polls"], fake_api["checksum"] = 0, {"algorithm": "crc32", "value": "deadbeef"}
    bad = run_export(
        api, export_request("products", delivery="async"), tmp_path / "bad.csv", SilentProgress(), poll_interval=0.01
    )
    assert not bad.ok and len(bad.problems) == 1 and "checksum mismatch" in bad.problems[0]
    assert (bad.rows, bad.bytes) == (2, len(CSV_BODY))  # rows and size agree: only the checksum tells
    code = cli.main(["--api-url", fake_api["base"], "--api-key", "k", "download", "e1", "-o", str(tmp_path / "c.csv")])
    assert code == cli.EXIT_FAILED and "checksum mismatch" in capsys.readouterr().err


def test_an_object_gone_from_storage_is_named(fake_api, tmp_path):
    fake_api["gone"] = True
    outcome = run_export(
        ApiClient(fake_api["base"], "k"),
        export_request("products", delivery="async"),
        tmp_path / "out.csv",
        SilentProgress(),
        poll_interval=0.01,
    )
    assert not outcome.ok and outcome.problems == ["the file of export e1 is no longer in storage"]
    assert not (tmp_path / "out.csv").exists()


def test_inline_answer_is_streamed_and_checked_against_x_spillway_rows(fake_api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run_export(
        ApiClient(fake_api["base"], "k"), export_request("products", delivery="inline"), progress=SilentProgress()
    )
    assert outcome.ok and outcome.delivery == "inline" and outcome.rows == 2
    assert outcome.path == Path("inline.csv") and (tmp_path / "inline.csv").read_bytes() == CSV_BODY


def test_ctrl_c_while_waiting_asks_for_cancel(fake_api, tmp_path):
    def interrupt(_seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_export(
            ApiClient(fake_api["base"], "k"),
            export_request("products", delivery="async"),
            tmp_path / "o.csv",
            SilentProgress(),
            sleep=interrupt,
        )
    assert ("POST", "/exports/e1/cancel", "Bearer k") in fake_api["requests"]


def test_missing_cancel_endpoint_is_named_not_confused_with_a_missing_export(fake_api):
    api = ApiClient(fake_api["base"], "k")
    with pytest.raises(CancelUnsupportedError, match="does not support cancelling"):
        api.cancel_export("e1")
    with pytest.raises(ApiError) as refused:
        api.cancel_export("unknown")
    assert not isinstance(refused.value, CancelUnsupportedError) and refused.value.status == 404


def test_the_client_never_follows_a_redirect_with_its_key(fake_api):
    with ApiClient(fake_api["base"], "k").open("GET", "/exports/e1/download") as response:
        assert response.status == 302 and response.headers["Location"].endswith("/s3/object")
    assert not any(path == "/s3/object" for _, path, _ in fake_api["requests"])


def test_api_errors_print_message_and_field_and_exit_2(fake_api, capsys):
    code = cli.main(["--api-url", fake_api["base"], "--api-key", "k", "export", "products", "--columns", "nope"])
    assert code == 2
    assert "error: unknown column 'nope' (field: columns)" in capsys.readouterr().err


def test_connection_refused_names_the_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    base = f"http://127.0.0.1:{server.server_port}"
    server.server_close()  # nothing listens there now
    with pytest.raises(ApiConnectionError, match=f"cannot reach the Spillway API at {base}"):
        ApiClient(base, "k").get_export("e1")


def test_cli_needs_a_key_and_takes_options_before_or_after_the_command(monkeypatch, capsys):
    monkeypatch.delenv("SPILLWAY_API_KEY", raising=False)
    assert cli.main(["datasets"]) == 2
    assert "SPILLWAY_API_KEY" in capsys.readouterr().err
    parser = cli.build_parser({"api_url": "http://env:1", "api_key": "env-key"})
    assert parser.parse_args(["list"]).api_url == "http://env:1"
    args = parser.parse_args(["status", "e1", "--api-url", "http://flag:2", "--api-key", "flag-key"])
    assert (args.api_url, args.api_key) == ("http://flag:2", "flag-key")


def test_server_file_names_cannot_escape_the_directory():
    assert safe_filename("../../etc/passwd", "x.csv") == "passwd"
    assert safe_filename("..", "x.csv") == "x.csv" and safe_filename(None, "x.csv") == "x.csv"


def test_demo_names_the_dependency_that_is_down():
    from client.demo import describe_health

    body = {
        "status": "unavailable",
        "down": ["redis"],
        "dependencies": {"postgres": {"ok": True}, "redis": {"ok": False, "error": "ConnectionError: refused"}},
    }
    assert describe_health(503, body) == "down: redis (ConnectionError: refused)"
