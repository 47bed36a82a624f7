"""Every line the service writes to stderr is one JSON object, a library's warning and a traceback included."""

import json
import subprocess
import sys
import textwrap


def test_library_warnings_and_exceptions_are_json_lines():
    code = textwrap.dedent("""
        import logging, warnings
        from towerlab.serve.worker import log, setup_logging
        setup_logging()
        log.info("graded", extra={"fields": {"rows": 3}})
        logging.getLogger("psycopg").warning(
            "error ignored in rollback on <psycopg.Connection>: terminating\\nconnection"
        )
        warnings.warn("a library's warning")
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("failed")
        logging.getLogger("sqlalchemy.pool").info("below warning: not shown")
    """)
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    lines = [json.loads(line) for line in err.splitlines()]  # each line parses on its own
    assert [e["msg"].split(":")[0] for e in lines] == [
        "graded",
        "error ignored in rollback on <psycopg.Connection>",
        lines[2]["msg"].split(":")[0],
        "failed",
    ]
    assert lines[0]["rows"] == 3 and "logger" not in lines[0]
    assert lines[1]["logger"] == "psycopg" and lines[1]["level"] == "warning"
    assert lines[2]["logger"] == "py.warnings" and "a library's warning" in lines[2]["msg"]
    assert "ZeroDivisionError" in lines[3]["exception"]
