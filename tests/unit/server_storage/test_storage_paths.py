from __future__ import annotations

import pytest

from tilde.server.storage import InvalidArgument, validate_path
from tilde.server.storage.paths import prefix_upper_bound


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "a/b/c.txt",
        "data/2024/file.parquet",
        "spaces are fine.txt",
        "ünïcödé/日本語.txt",
        ".hidden/..dots/...",
        "/".join(["x" * 255] * 3 + ["x" * 254, "y"]),
        "/".join(["é" * 127] * 4),
        "x" * 255,
        "é" * 127 + "e",
        "emoji/😀",
    ],
)
def test_valid_paths(path: str) -> None:
    assert validate_path(path) == path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("/abs", "leading slash"),
        ("a//b", "empty segment"),
        ("a/", "trailing slash (empty last segment)"),
        ("./a", "dot segment"),
        ("a/./b", "dot segment"),
        ("a/..", "dot-dot segment"),
        ("../a", "dot-dot segment"),
        ("a\x00b", "NUL"),
        ("a\nb", "newline"),
        ("a\tb", "tab"),
        ("a\x7fb", "DEL"),
        ("a\x85b", "C1 control"),
        ("/".join(["x" * 255] * 3 + ["x" * 254, "yy"]), "too long"),
        ("/".join(["é" * 127] * 4) + "/ééé", "too long in UTF-8 bytes"),
        ("x" * 256, "segment longer than a file name"),
        ("a/" + "é" * 128 + "/b", "segment longer than a file name in UTF-8 bytes"),
        ("bad\udc80", "lone surrogate"),
    ],
)
def test_invalid_paths(path: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_path(path)
    assert info.value.code == "invalid_path", reason


def test_prefix_upper_bound_orders_after_every_extension() -> None:
    bound = prefix_upper_bound("a/")
    assert bound == "a0"
    for path in ["a/", "a/b", "a/\U0010ffff", "a/zzz"]:
        assert path < bound
    assert bound <= "a0"
    assert prefix_upper_bound("\U0010ffff") is None
    assert prefix_upper_bound("a\U0010ffff") == "b"
    # The code point after the surrogate block: surrogates cannot be stored.
    assert prefix_upper_bound("\ud7ff") == "\ue000"
