"""UploadSource: every accepted input shape, sizes, rewinding."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from tilde.data.upload_source import UploadSource


def test_bytes_like_inputs_have_a_size_and_rewind() -> None:
    for data in (b"hello world", bytearray(b"hello world"), memoryview(b"hello world")):
        source = UploadSource(data)
        assert source.size == 11
        assert source.read_block(5) == b"hello"
        assert source.rewindable
        source.rewind()
        assert b"".join(source.iter_chunks(4)) == b"hello world"
        assert source.read_block(4) == b""


def test_path_is_opened_and_closed(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"x" * 1000)
    source = UploadSource(target)
    assert source.size == 1000
    assert source.read_block(600) == b"x" * 600
    assert source.read_block(600) == b"x" * 400
    owned = source._owned
    assert owned is not None
    source.close()
    assert owned.closed


def test_file_object_is_read_from_its_position_and_left_open() -> None:
    stream = io.BytesIO(b"0123456789")
    stream.seek(4)
    source = UploadSource(stream)
    assert source.size == 6
    assert source.read_block(100) == b"456789"
    source.rewind()
    assert source.read_block(2) == b"45"
    source.close()
    assert not stream.closed


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        # Short reads on purpose: read_block must keep reading until it has a full block.
        chunk = self._data.read(min(len(buffer), 3))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_unseekable_stream_has_unknown_size_and_full_blocks() -> None:
    source = UploadSource(_Unseekable(b"abcdefghij"))
    assert source.size is None
    assert source.read_block(7) == b"abcdefg"
    assert not source.rewindable
    with pytest.raises(ValueError, match="cannot be rewound"):
        source.rewind()
    assert source.read_block(7) == b"hij"


def test_iterables_are_reblocked() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"ab"
        yield b""
        yield b"cdefg"
        yield b"h"

    source = UploadSource(chunks())
    assert source.size is None
    assert source.rewindable  # nothing consumed yet
    assert source.read_block(3) == b"abc"
    assert not source.rewindable
    assert source.read_block(3) == b"def"
    assert source.read_block(3) == b"gh"
    assert source.read_block(3) == b""


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(TypeError, match="not str"):
        UploadSource("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        UploadSource(42)  # type: ignore[arg-type]
    source = UploadSource(iter(["text"]))  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must yield bytes"):
        source.read_block(10)
