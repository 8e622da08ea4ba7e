"""Producers' pure parts: how an item becomes body bytes."""

from __future__ import annotations

import pytest

from streaming_responses._producers import coerce_chunk


def test_coerce_chunk_passes_bytes_through_unchanged() -> None:
    chunk = b"abc"
    assert coerce_chunk(chunk, "utf-8") is chunk


def test_coerce_chunk_encodes_text_with_the_charset() -> None:
    assert coerce_chunk("é", "utf-8") == b"\xc3\xa9"
    assert coerce_chunk("é", "latin-1") == b"\xe9"


def test_coerce_chunk_copies_buffers_the_producer_may_reuse() -> None:
    buffer = bytearray(b"abc")
    view = memoryview(buffer)
    assert coerce_chunk(view, "utf-8") == b"abc"
    assert coerce_chunk(buffer, "utf-8") == b"abc"
    assert type(coerce_chunk(view, "utf-8")) is bytes


def test_coerce_chunk_accepts_subclasses_of_str() -> None:
    class Text(str):
        pass

    assert coerce_chunk(Text("hi"), "utf-8") == b"hi"


@pytest.mark.parametrize(("chunk", "name"), [(1, "int"), (None, "NoneType"), ({"a": 1}, "dict")])
def test_coerce_chunk_rejects_other_types_naming_them(chunk: object, name: str) -> None:
    with pytest.raises(TypeError, match=f"must be bytes, str or memoryview, not {name}"):
        coerce_chunk(chunk, "utf-8")
