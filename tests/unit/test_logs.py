"""Job-context logging: lines inside an export's work name the export, part and attempt."""

from __future__ import annotations

import json
import logging

import pytest

from shared.logs import TEXT_FORMAT, ContextFilter, bind_log_context, json_formatter, log_context, logging_config
from shared.settings import SettingsError, load_settings


def _line(logger: logging.Logger, handler: logging.Handler, stream) -> str:
    logger.warning("hello")
    handler.flush()
    return stream.getvalue().splitlines()[-1]


def test_lines_inside_a_context_carry_it_and_lines_outside_do_not(tmp_path):
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("spillway.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        assert "[" not in _line(logger, handler, stream)
        with log_context(export="e1", part=7):
            assert _line(logger, handler, stream).endswith("[export=e1 part=7] hello")
            with log_context(attempt=2):
                assert "[export=e1 part=7 attempt=2] hello" in _line(logger, handler, stream)
            assert "attempt" not in _line(logger, handler, stream)
        assert "[" not in _line(logger, handler, stream)
    finally:
        logger.removeHandler(handler)


def _json_lines(emit) -> list[dict]:
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("spillway.test-json-logs")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_context_fields_that_are_set_and_no_others():
    def emit(logger):
        logger.info("outside")
        with log_context(export="e1", part=3):
            bind_log_context(owner="alice", attempt=2)
            logger.warning("inside %s", "the job")
        logger.info("after")

    outside, inside, after = _json_lines(emit)
    assert inside["message"] == "inside the job" and inside["level"] == "WARNING"
    assert inside["logger"] == "spillway.test-json-logs" and isinstance(inside["process"], int)
    assert {k: inside[k] for k in ("export", "part", "attempt", "owner")} == {
        "export": "e1",
        "part": "3",
        "attempt": "2",
        "owner": "alice",
    }
    assert inside["time"].endswith("+00:00")
    for line in (outside, after):  # bound fields leave with their context
        assert not {"export", "part", "attempt", "owner", "context"} & line.keys()


def test_a_gunicorn_access_line_takes_its_request_id_and_never_the_request_headers():
    atoms = {
        "{x-request-id}o": "r-123",
        "{authorization}i": "Bearer sw_secret",
        "m": "GET",
        "U": "/exports",
        "s": "200",
        "D": "1234",
    }

    def emit(logger):
        access = logging.getLogger("gunicorn.access")
        for handler in logger.handlers:
            access.addHandler(handler)
        access.propagate = False
        access.setLevel(logging.INFO)
        try:
            access.info("%(m)s %(U)s %(s)s", atoms)
        finally:
            for handler in logger.handlers:
                access.removeHandler(handler)

    (line,) = _json_lines(emit)
    assert line["message"] == "GET /exports 200"
    assert line["request_id"] == "r-123" and line["status"] == "200" and line["duration_us"] == "1234"
    assert "sw_secret" not in json.dumps(line)


def test_every_process_has_one_handler_and_gunicorn_hands_its_lines_to_it():
    config = logging_config("json", "INFO")
    assert config["root"]["handlers"] == ["stderr"]
    assert config["loggers"]["gunicorn.access"] == {"handlers": [], "propagate": True, "level": "INFO"}
    assert logging_config("text", "WARNING")["loggers"]["gunicorn.error"]["level"] == "WARNING"  # the level reaches it
    with pytest.raises(ValueError, match="log format"):
        logging_config("xml")


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "loud")])
def test_a_bad_log_setting_is_refused_with_its_name(name, value):
    with pytest.raises(SettingsError, match=f"SPILLWAY_{name}"):
        load_settings({f"SPILLWAY_{name}": value})
