"""LoRA fine-tuning on this machine: training speed and the README example's before/after.

    .venv/bin/python bench/finetune.py [--steps 12] [--skip-example] [--models default,smollm2]

1. Speed: steps/s, tokens/s and the step time (median, p95) of `switchboard finetune`'s
   default LoRA (every linear layer, rank 16) on the demo FAQ data (demo/finetune, exported
   and redacted as the README does), for the default model and SmolLM2-135M, side by side
   with peft's own default (q_proj and v_proj only, rank 8) as the baseline, and the ratio.
2. The README example: the default model fine-tuned with the README's command; eval loss,
   perplexity and the share of demo/finetune/check.jsonl's answers stating the expected
   fact, before and after.

Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bot.llm.finetune.command import _storage_point
from bot.llm.finetune.train import FinetuneConfig, Trainer
from bot.llm.transformers_engine import resolve_model_path
from bot.llm.weights import ensure_gguf_model, smollm2_gguf
from bot.settings import LLMSettings, Settings

FAQ = ROOT / "demo" / "finetune"
CHECKS = FAQ / "check.jsonl"
POLICY = ROOT / "demo" / "policy.yaml"
# The README's command: switchboard finetune --epochs 4 --learning-rate 3e-4 ...
EXAMPLE = {"epochs": 4, "learning_rate": 3e-4}


def export_faq(target: Path) -> Path:
    import asyncio

    from bot.llm.finetune.export import export_examples
    from policies.engine import PolicyEngine

    engine = PolicyEngine.from_file(POLICY)
    try:
        asyncio.run(export_examples(target, engine, redis=None, kb=[FAQ]))
    finally:
        engine.close()
    return target


def model_path(name: str, settings: Settings) -> str:
    if name == "smollm2":
        return str(ensure_gguf_model(smollm2_gguf(), settings.model_cache_dir))
    return resolve_model_path(LLMSettings(model=name), settings.model_cache_dir)


def run(config: FinetuneConfig, path: str) -> dict[str, Any]:
    with _storage_point(POLICY) as redact:
        return Trainer(config, path, redact, progress=False).run().report


def speed(name: str, path: str, data: Path, steps: int, work: Path) -> list[dict[str, Any]]:
    rows = []
    for label, modules, rank in (
        ("switchboard default: all linear layers, r=16", "all-linear", 16),
        ("baseline, peft's default: q_proj,v_proj, r=8", "q_proj,v_proj", 8),
    ):
        config = FinetuneConfig(
            data=data,
            out=work / f"{name}-{rank}",
            base=name,
            steps=steps,
            target_modules=modules,
            lora_r=rank,
            lora_alpha=2 * rank,
            eval_split=0.1,
            overwrite=True,
        )
        report = run(config, path)
        timing = report["timing"]
        rows.append({"model": name, "config": label, **timing})
        print(
            f"  {name:<28} {label:<46} {timing['steps_per_s']:.3f} steps/s "
            f"{timing['tokens_per_s']:>7.1f} tok/s  step median {timing['step_median_s']:.2f} s "
            f"p95 {timing['step_p95_s']:.2f} s",
            flush=True,
        )
    ratio = rows[0]["step_median_s"] / rows[1]["step_median_s"]
    print(f"  {name}: a default step takes {ratio:.2f}x the baseline's", flush=True)
    return rows


def example(path: str, data: Path, out: Path) -> dict[str, Any]:
    config = FinetuneConfig(
        data=data,
        out=out,
        base="qwen2.5-coder-0.5b-instruct",
        check=CHECKS,
        overwrite=True,
        **EXAMPLE,  # type: ignore[arg-type]
    )
    report = run(config, path)
    before, after = report["before"], report["after"]
    print(
        f"  eval loss {before['eval_loss']:.3f} -> {after['eval_loss']:.3f}; perplexity "
        f"{before['perplexity']:.2f} -> {after['perplexity']:.2f}"
    )
    print(f"  checks {before['check_share']:.0%} -> {after['check_share']:.0%}")
    for old, new in zip(before["checks"], after["checks"], strict=True):
        print(f"    {new['question']}")
        print(f"      before {'HIT ' if old['hit'] else 'miss'} {old['answer'][:110]!r}")
        print(f"      after  {'HIT ' if new['hit'] else 'miss'} {new['answer'][:110]!r}")
    timing = report["timing"]
    print(
        f"  {report['steps']} steps in {timing['train_seconds']} s "
        f"({timing['steps_per_s']} steps/s, {timing['tokens_per_s']} tok/s); "
        f"whole run {timing['total_seconds']} s"
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="training steps per speed run")
    parser.add_argument("--models", default="qwen2.5-coder-0.5b-instruct,smollm2")
    parser.add_argument("--skip-example", action="store_true")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    import torch

    settings = Settings()
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, cuda {torch.cuda.is_available()}"
    )
    results: dict[str, Any] = {"speed": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = export_faq(work / "faq.jsonl")
        count = sum(1 for _ in data.open())
        print(f"data: {count} FAQ examples exported from {FAQ.relative_to(ROOT)} (redacted)")
        print(f"\n1. training speed, {args.steps} steps of batch 4:")
        for name in args.models.split(","):
            started = time.perf_counter()
            path = model_path(name, settings)
            print(f"  ({name} ready in {time.perf_counter() - started:.1f} s)", flush=True)
            results["speed"] += speed(name, path, data, args.steps, work)
        if not args.skip_example:
            print("\n2. the README example (default model, --epochs 4 --learning-rate 3e-4):")
            path = model_path("qwen2.5-coder-0.5b-instruct", settings)
            report = example(path, data, work / "example")
            results["example"] = {k: report[k] for k in ("before", "after", "timing", "steps")}
    if args.json_out:
        args.json_out.mkdir(parents=True, exist_ok=True)
        (args.json_out / "finetune.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
