"""Content-Disposition values: safe for any file name, including names that are not UTF-8."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streaming_responses import FileResponse
from streaming_responses._disposition import content_disposition
from tests.asgi import Recorder, http_scope


def test_a_lone_surrogate_becomes_the_replacement_character_not_an_encoding_error() -> None:
    value = content_disposition("r\udce9sum\udce9.txt")
    assert value == "attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%EF%BF%BDsum%EF%BF%BD.txt"
    value.encode("latin-1")  # a header value the server can send


@pytest.mark.anyio
async def test_a_file_whose_name_is_latin_1_on_disk_is_served_with_a_safe_download_name(
    tmp_path: Path,
) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9.txt"  # what a Latin-1 system leaves on disk
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"coffee")
    os.close(fd)
    (listed,) = os.listdir(tmp_path)
    assert listed == "caf\udce9.txt"
    recorder = Recorder()
    response = FileResponse(tmp_path / listed, filename=listed)
    await response(http_scope(), recorder.receive, recorder.send)
    assert recorder.start["status"] == 200
    assert recorder.body == b"coffee"
    assert recorder.headers[b"content-disposition"] == (
        b"attachment; filename=\"caf_.txt\"; filename*=UTF-8''caf%EF%BF%BD.txt"
    )
