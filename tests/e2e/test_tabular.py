"""CSVResponse and JSONLinesResponse on uvicorn (httptools): downloads with curl, byte for byte."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest

from tests.e2e.tabular_app import ROWS, table

from .clients import CURL_PARTIAL_FILE, curl
from .servers import RunningServer, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def tabular_server() -> Iterator[RunningServer]:
    server = start_server("uvicorn-httptools", app="tests.e2e.tabular_app:app")
    try:
        yield server
    finally:
        server.stop()


def expected_csv(delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(("id", "name", "text", "empty", "half"))
    writer.writerows(table(ROWS))
    return buffer.getvalue()


def test_a_csv_download_is_complete_and_named(tabular_server: RunningServer) -> None:
    result = curl(tabular_server.port, "/report.csv")
    assert result.exit_code == 0, result.describe()
    assert result.header("content-type") == "text/csv; charset=utf-8"
    assert result.header("content-disposition") == 'attachment; filename="report.csv"'
    assert result.header("transfer-encoding") == "chunked"
    assert result.body == expected_csv().encode("utf-8")


def test_bom_charset_and_delimiter_reach_the_client(tabular_server: RunningServer) -> None:
    result = curl(tabular_server.port, "/report.csv?bom=true&delimiter=%3B")
    assert result.exit_code == 0, result.describe()
    assert result.body.startswith(b"\xef\xbb\xbfid;name;")
    assert result.body.count(b"\xef\xbb\xbf") == 1
    assert result.body[3:] == expected_csv(";").encode("utf-8")
    wide = curl(tabular_server.port, "/report.csv?encoding=utf-16")
    assert wide.header("content-type") == "text/csv; charset=utf-16"
    assert wide.body.decode("utf-16") == expected_csv()
    # "✓" is not in Latin-1: the stream fails at the first batch, before any byte is sent.
    latin = curl(tabular_server.port, "/report.csv?encoding=latin-1")
    assert latin.status == 500, latin.describe()


def test_a_bad_row_after_the_start_is_a_partial_transfer_for_curl(tabular_server: RunningServer) -> None:
    result = curl(tabular_server.port, "/broken.csv")
    assert result.status == 200, result.describe()
    assert result.exit_code == CURL_PARTIAL_FILE, result.describe()
    assert result.body.startswith(b"0,fine\r\n")


def test_json_lines_from_a_fastapi_generator_read_back(tabular_server: RunningServer) -> None:
    result = curl(tabular_server.port, "/items")
    assert result.exit_code == 0, result.describe()
    assert result.header("content-type") == "application/jsonl"
    lines = result.body.split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line) for line in lines[:-1]] == [{"id": n, "name": f"item {n}"} for n in range(ROWS)]
