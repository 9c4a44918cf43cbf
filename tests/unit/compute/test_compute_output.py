from __future__ import annotations

import pytest

from tilde.compute import OutputStream, RunResult


def test_read_text_and_str() -> None:
    stream = OutputStream(b"h\xc3\xa9llo\r\n")
    assert stream.read() == b"h\xc3\xa9llo\r\n"
    assert stream.text() == "héllo\r\n"
    assert str(stream) == "héllo\r\n"
    assert stream.text("latin-1") == "hÃ©llo\r\n"


def test_undecodable_bytes_are_replaced_not_raised() -> None:
    assert OutputStream(b"ok\xff").text() == "ok\ufffd"


def test_empty_and_none() -> None:
    assert OutputStream().read() == b""
    assert OutputStream(None).text() == ""
    assert list(OutputStream(b"").iter_lines()) == []
    assert list(OutputStream(b"").iter_bytes()) == []


def test_iter_bytes_chunks() -> None:
    stream = OutputStream(b"abcdefg")
    assert list(stream.iter_bytes(3)) == [b"abc", b"def", b"g"]
    with pytest.raises(ValueError, match="positive"):
        list(stream.iter_bytes(0))


def test_iter_text_keeps_multibyte_characters_whole_across_chunks() -> None:
    stream = OutputStream("aé€😀".encode())
    assert list(stream.iter_text(1)) == ["a", "é", "€", "😀"]
    assert "".join(stream.iter_text(2)) == "aé€😀"


def test_iter_lines_drops_terminators() -> None:
    assert list(OutputStream(b"one\ntwo\r\nthree").iter_lines()) == ["one", "two", "three"]
    assert list(OutputStream(b"x\n").iter_lines()) == ["x"]


def test_equality_and_repr() -> None:
    assert OutputStream(b"x") == OutputStream(b"x")
    assert OutputStream(b"x") == b"x"
    assert OutputStream(b"x") != OutputStream(b"y")
    assert OutputStream(b"x") != "x"
    assert repr(OutputStream(b"abc")) == "OutputStream(3 bytes)"
    with pytest.raises(TypeError):
        hash(OutputStream(b"x"))


def test_run_result() -> None:
    result = RunResult(OutputStream(b"o"), OutputStream(b"e"), 0)
    assert result.ok
    assert not RunResult(OutputStream(), OutputStream(), 2).ok
    assert result == RunResult(OutputStream(b"o"), OutputStream(b"e"), 0)
