"""Job-context logging: lines inside an export's work name the export, part and attempt."""

from __future__ import annotations

import logging

from shared.logs import TEXT_FORMAT, ContextFilter, log_context


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
