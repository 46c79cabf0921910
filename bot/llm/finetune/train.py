"""LoRA fine-tuning of a causal LM on redacted chat examples: `switchboard finetune`.

One run, start to finish::

    read JSONL ─▶ redact (policy storage point) ─▶ split train/eval (seeded)
      ─▶ tokenize (loss on assistant turns only) ─▶ evaluate before (loss, perplexity, checks)
      ─▶ train LoRA (AdamW, warm-up then linear decay, checkpoints) ─▶ evaluate after
      ─▶ adapter + report.json + report.md in OUT (and OUT/merged with --merge)

A run is deterministic for a seed: the batches of every step are fixed up front
(`data.schedule`), and a checkpoint holds the adapter, the optimizer, the learning-rate
schedule and the random-number state, so an interrupted run resumed with `--resume`
ends with the same adapter as one that never stopped. Ctrl-C saves a checkpoint first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import ConfigError, SwitchboardError
from bot.llm.finetune.adapter import ADAPTER_META, quiet_peft
from bot.llm.finetune.data import (
    IGNORE,
    Example,
    Redact,
    RedactionSummary,
    Tokenized,
    read_examples,
    read_jsonl,
    redact_examples,
    schedule,
    split,
    steps_per_epoch,
    tokenize,
    write_examples,
)

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
_KEEP_CHECKPOINTS = 2


class Interrupted(SwitchboardError):
    """Training stopped on request; a checkpoint was saved and `--resume` goes on from it."""

    code = "interrupted"


@dataclass
class FinetuneConfig:
    """What `switchboard finetune` was asked to do (its options)."""

    data: Path
    out: Path
    base: str
    epochs: int | None = None  # default 3 when `steps` is not given either
    steps: int | None = None
    eval_split: float = 0.1
    seed: int = 0
    batch_size: int = 4
    learning_rate: float = 2e-4
    warmup: float = 0.1  # share of the steps spent warming the learning rate up
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    max_tokens: int = 1024
    save_every: int = 50
    check: Path | None = None
    check_tokens: int = 96
    merge: bool = False
    resume: bool = False
    overwrite: bool = False
    device: str = "auto"

    def training_fields(self) -> dict[str, Any]:
        """The options that shape the adapter (a resumed run must match them)."""
        keep = ["base", "epochs", "steps", "eval_split", "seed", "batch_size", "learning_rate"]
        keep += ["warmup", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "max_tokens"]
        return {name: getattr(self, name) for name in keep}


@dataclass
class CheckResult:
    question: str
    expected: list[str]
    answer: str
    hit: bool


@dataclass
class Evaluation:
    """How the model does on the held-out split and the fact checks."""

    eval_loss: float | None = None
    perplexity: float | None = None
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def check_share(self) -> float | None:
        return sum(c.hit for c in self.checks) / len(self.checks) if self.checks else None

    def to_json(self) -> dict[str, Any]:
        return {
            "eval_loss": self.eval_loss,
            "perplexity": self.perplexity,
            "check_share": self.check_share,
            "checks": [asdict(c) for c in self.checks],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        return cls(
            data["eval_loss"], data["perplexity"], [CheckResult(**c) for c in data["checks"]]
        )


@dataclass
class Check:
    question: str
    expected: list[str]
    system: str | None = None


def read_checks(path: Path) -> list[Check]:
    """`--check FILE`: JSONL of {"question", "expected": "fact" | ["fact", "or this"]}."""
    return [check for _, check in read_jsonl(path, "the check file", _check, "checks")]


def _check(data: Any) -> Check:
    question = data.get("question") if isinstance(data, dict) else None
    expected = data.get("expected") if isinstance(data, dict) else None
    if isinstance(expected, str):
        expected = [expected]
    if not isinstance(question, str) or not question.strip():
        raise ValueError('"question" must be a non-empty string')
    if not (
        isinstance(expected, list)
        and expected
        and all(isinstance(e, str) and e.strip() for e in expected)
    ):
        raise ValueError('"expected" must be a string or a list of strings')
    system = data.get("system")
    return Check(question, expected, system if isinstance(system, str) else None)


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[*_`]", "", text).casefold().split())


def contains_fact(answer: str, expected: Sequence[str]) -> bool:
    """Whether the answer states one of the expected facts (case and spacing aside)."""
    said = _normal(answer)
    return any(_normal(fact) in said for fact in expected)


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Prepared:
    """The data, redacted and tokenized, with what the report says about it."""

    train: list[Tokenized]
    eval: list[Tokenized]
    train_examples: int
    eval_examples: int
    dropped: int
    truncated: int
    redaction: RedactionSummary
    fingerprint: str


@dataclass
class RunResult:
    out: Path
    report: dict[str, Any]


class Trainer:
    """One fine-tuning run. `redact` is the policy's storage point (see `cli.finetune`)."""

    def __init__(
        self,
        config: FinetuneConfig,
        model_path: str,
        redact: Redact,
        *,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.model_path = model_path
        self.redact = redact
        self.progress = progress
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = "cpu"
        self._stop = False

    # -- preparing ------------------------------------------------------------------------

    def check_out_dir(self) -> None:
        out, config = self.config.out, self.config
        checkpoints = latest_checkpoint(out)
        if config.resume:
            if checkpoints is None:
                raise ConfigError(f"--resume: {out} holds no checkpoint to resume from")
            return
        if out.exists() and any(out.iterdir()):
            if not config.overwrite:
                what = "an unfinished run" if checkpoints else "files"
                raise ConfigError(
                    f"{out} already holds {what}: pass --resume to continue a run, "
                    "--overwrite to start over, or choose another --out"
                )
            if not any((out / mark).exists() for mark in (ADAPTER_META, CHECKPOINTS, "data")):
                # --overwrite deletes the folder: never one that is not a fine-tuning run's.
                raise ConfigError(
                    f"{out} is not the folder of a fine-tuning run; --overwrite only replaces "
                    "those. Choose a new or empty --out"
                )
            shutil.rmtree(out)

    def prepare(self, tokenizer: Any) -> Prepared:
        config = self.config
        examples = read_examples(config.data)
        with _bar(self.progress, len(examples), "redacting") as bar:
            redacted, summary = redact_examples(examples, self.redact, bar)
        train, held = split(redacted, config.eval_split, config.seed)
        data_dir = config.out / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        write_examples(data_dir / "train.jsonl", train)
        write_examples(data_dir / "eval.jsonl", held)
        train_ids, train_dropped, train_cut = self._tokenize_all(train, tokenizer)
        eval_ids, eval_dropped, eval_cut = self._tokenize_all(held, tokenizer)
        if not train_ids:
            raise ConfigError(
                "no training example keeps an assistant token within --max-tokens "
                f"({config.max_tokens}); raise it"
            )
        digest = hashlib.sha256()
        for item in (*train_ids, *eval_ids):
            digest.update(json.dumps([item.input_ids, item.labels]).encode())
        digest.update(json.dumps(config.training_fields(), sort_keys=True).encode())
        return Prepared(
            train_ids,
            eval_ids,
            len(train),
            len(held),
            train_dropped + eval_dropped,
            train_cut + eval_cut,
            summary,
            digest.hexdigest(),
        )

    def _tokenize_all(
        self, examples: Sequence[Example], tokenizer: Any
    ) -> tuple[list[Tokenized], int, int]:
        kept, dropped, truncated = [], 0, 0
        for example in examples:
            item = tokenize(example, tokenizer, self.config.max_tokens)
            truncated += item.truncated
            if item.trained_tokens:
                kept.append(item)
            else:
                dropped += 1
        return kept, dropped, truncated

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model: Any = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype)
        self.model = model.to(device)
        self.device = device

    def add_lora(self) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        config = self.config
        torch.manual_seed(config.seed)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.target_modules
            if config.target_modules == "all-linear"
            else [m.strip() for m in config.target_modules.split(",")],
            task_type="CAUSAL_LM",
        )
        with quiet_peft():
            self.model = get_peft_model(self.model, lora)

    # -- measuring ------------------------------------------------------------------------

    def evaluate(self, data: Sequence[Tokenized], checks: Sequence[Check]) -> Evaluation:
        import torch

        self.model.eval()
        result = Evaluation()
        if data:
            total, count = 0.0, 0
            with torch.no_grad(), _bar(self.progress, len(data), "eval loss") as bar:
                for item in data:
                    ids = torch.tensor([item.input_ids], device=self.device)
                    labels = torch.tensor([item.labels], device=self.device)
                    n = int((labels[:, 1:] != IGNORE).sum())
                    if n == 0:
                        continue
                    loss = self.model(input_ids=ids, labels=labels).loss
                    total += float(loss) * n
                    count += n
                    bar(1)
            result.eval_loss = total / count if count else None
            result.perplexity = math.exp(result.eval_loss) if result.eval_loss is not None else None
        with _bar(self.progress, len(checks), "checks") as bar:
            for check in checks:
                answer = self.answer(check)
                text, _ = self.redact(answer)  # the report is stored: no PII in it either
                result.checks.append(
                    CheckResult(
                        check.question, check.expected, text, contains_fact(answer, check.expected)
                    )
                )
                bar(1)
        return result

    def answer(self, check: Check) -> str:
        """The model's greedy answer to a check's question, as the engine would give it."""
        import torch

        chat = ([{"role": "system", "content": check.system}] if check.system else []) + [
            {"role": "user", "content": check.question}
        ]
        ids = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        inputs = torch.tensor([list(ids)], device=self.device)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=self.config.check_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return str(self.tokenizer.decode(out[0, inputs.shape[1] :], skip_special_tokens=True))

    # -- training -------------------------------------------------------------------------

    def total_steps(self, train_size: int) -> int:
        if self.config.steps is not None:
            return self.config.steps
        return (self.config.epochs or 3) * steps_per_epoch(train_size, self.config.batch_size)

    def train(self, prepared: Prepared, state: dict[str, Any]) -> dict[str, Any]:
        """Run the steps not yet done (from `state["step"]`); returns the final state."""
        import torch

        config = self.config
        total: int = state["total_steps"]
        batches = schedule(len(prepared.train), config.batch_size, total, config.seed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
        warmup = max(1, round(total * config.warmup)) if config.warmup > 0 else 0

        def rate(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
        if "optimizer" in state:
            optimizer.load_state_dict(state.pop("optimizer"))
            scheduler.load_state_dict(state.pop("scheduler"))
            _set_rng(state.pop("rng"))
        self.model.train()
        started, tokens, seconds = time.perf_counter(), 0, []
        first = state["step"]
        with (
            _interruptible(self) as stopping,
            _bar(self.progress, total, "training", initial=first) as bar,
        ):
            for step in range(first, total):
                began = time.perf_counter()
                batch = [prepared.train[i] for i in batches[step]]
                ids, labels, mask = _collate(batch, self.tokenizer.pad_token_id, self.device)
                loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += int(mask.sum())
                seconds.append(time.perf_counter() - began)
                value = float(loss.detach())
                state["step"] = step + 1
                state["losses"].append(round(value, 5))
                bar(1, loss=value, lr=float(scheduler.get_last_lr()[0]))
                last = step + 1 == total
                if stopping() or (not last and (step + 1) % config.save_every == 0):
                    self.save_checkpoint(state, optimizer, scheduler)
                if stopping() and not last:
                    raise Interrupted(
                        f"stopped at step {step + 1} of {total}; a checkpoint is saved: run the "
                        "same command with --resume to go on"
                    )
        elapsed = time.perf_counter() - started
        done = state["step"] - first
        state["timing"] = {
            "train_seconds": round(elapsed, 2),
            "steps": done,
            "steps_per_s": round(done / elapsed, 4) if elapsed else None,
            "tokens": tokens,
            "tokens_per_s": round(tokens / elapsed, 1) if elapsed else None,
            "step_median_s": round(statistics.median(seconds), 3) if seconds else None,
            "step_p95_s": round(sorted(seconds)[round(0.95 * (len(seconds) - 1))], 3)
            if seconds
            else None,
        }
        return state

    def save_checkpoint(self, state: dict[str, Any], optimizer: Any, scheduler: Any) -> Path:
        import torch
        from peft import get_peft_model_state_dict

        root = self.config.out / CHECKPOINTS
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step-{state['step']:06d}"
        partial = root / f".{final.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        torch.save(get_peft_model_state_dict(self.model), partial / "adapter.pt")
        torch.save(
            {
                **state,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _get_rng(),
            },
            partial / "state.pt",
        )
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        for old in sorted(root.glob("step-*"))[:-_KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        import torch
        from peft import set_peft_model_state_dict

        state: dict[str, Any] = torch.load(path / "state.pt", weights_only=False)
        weights = torch.load(path / "adapter.pt", map_location=self.device, weights_only=True)
        set_peft_model_state_dict(self.model, weights)
        return state

    # -- the whole run --------------------------------------------------------------------

    def run(self) -> RunResult:
        config = self.config
        self.check_out_dir()
        checks = read_checks(config.check) if config.check else []
        self.load()
        prepared = self.prepare(self.tokenizer)
        self.add_lora()
        checkpoint = latest_checkpoint(config.out) if config.resume else None
        if checkpoint is not None:
            state = self.load_checkpoint(checkpoint)
            if state["fingerprint"] != prepared.fingerprint:
                raise ConfigError(
                    f"--resume: the data or the options differ from the run saved in "
                    f"{config.out}; resume with the same command, or --overwrite to start over"
                )
            log.info("resuming at step %d of %d", state["step"], state["total_steps"])
        else:
            before = self.evaluate(prepared.eval, checks)
            state = {
                "step": 0,
                "total_steps": self.total_steps(len(prepared.train)),
                "fingerprint": prepared.fingerprint,
                "losses": [],
                "before": before.to_json(),
            }
        started = time.time()
        state = self.train(prepared, state)
        after = self.evaluate(prepared.eval, checks)
        self.save_adapter()
        report = self.report(prepared, state, Evaluation.from_json(state["before"]), after)
        report["timing"]["total_seconds"] = round(time.time() - started, 1)
        write_report(config.out, report)
        if config.merge:
            self.merge(config.out / "merged")
        shutil.rmtree(config.out / CHECKPOINTS, ignore_errors=True)
        return RunResult(config.out, report)

    def save_adapter(self) -> None:
        out = self.config.out
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        meta = {"base": self.config.base, "created": time.time(), "format": 1}
        (out / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n")

    def merge(self, target: Path) -> None:
        """The base model with the adapter folded in: a plain model directory (for vLLM or
        `SWITCHBOARD_LLM__MODEL`)."""
        merged = self.model.merge_and_unload()
        merged.save_pretrained(target)
        self.tokenizer.save_pretrained(target)

    def report(
        self, prepared: Prepared, state: dict[str, Any], before: Evaluation, after: Evaluation
    ) -> dict[str, Any]:
        config = self.config
        return {
            "base": config.base,
            "adapter": str(config.out),
            "device": self.device,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "data": {
                "file": str(config.data),
                "train_examples": prepared.train_examples,
                "eval_examples": prepared.eval_examples,
                "dropped_no_answer_within_max_tokens": prepared.dropped,
                "truncated": prepared.truncated,
                "trained_tokens": sum(t.trained_tokens for t in prepared.train),
            },
            "privacy": {
                "messages": prepared.redaction.messages,
                "messages_changed": prepared.redaction.messages_changed,
                "entities_removed": sum(prepared.redaction.entities.values()),
                "entities_by_type": dict(sorted(prepared.redaction.entities.items())),
            },
            "steps": state["step"],
            "losses": state["losses"],
            "timing": state.get("timing", {}),
            "before": before.to_json(),
            "after": after.to_json(),
        }


def latest_checkpoint(out: Path) -> Path | None:
    root = out / CHECKPOINTS
    found = sorted(root.glob("step-*")) if root.is_dir() else []
    return found[-1] if found else None


def write_report(out: Path, report: dict[str, Any]) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(markdown_report(report), encoding="utf-8")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_report(report: dict[str, Any]) -> str:
    before, after, data, privacy = (
        report["before"],
        report["after"],
        report["data"],
        report["privacy"],
    )
    timing = report["timing"]

    def share(e: dict[str, Any]) -> str:
        if e["check_share"] is None:
            return "—"
        return f"{sum(c['hit'] for c in e['checks'])}/{len(e['checks'])} ({e['check_share']:.0%})"

    lines = [
        f"# Fine-tuning report: {report['adapter']}",
        "",
        f"Base model `{report['base']}` on {report['device']}; {report['steps']} steps, "
        f"{data['train_examples']} training and {data['eval_examples']} held-out examples, "
        f"{data['trained_tokens']} trained (assistant) tokens.",
        "",
        "| | before | after |",
        "|---|---|---|",
        f"| eval loss | {_fmt(before['eval_loss'])} | {_fmt(after['eval_loss'])} |",
        f"| perplexity | {_fmt(before['perplexity'], 2)} | {_fmt(after['perplexity'], 2)} |",
        f"| answers with the expected fact | {share(before)} | {share(after)} |",
        "",
        f"Privacy: {privacy['entities_removed']} PII entities removed from "
        f"{privacy['messages_changed']} of {privacy['messages']} messages before tokenizing"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in privacy["entities_by_type"].items()) + ")."
            if privacy["entities_by_type"]
            else "."
        ),
        "",
        f"Speed: {_fmt(timing.get('steps_per_s'))} steps/s, "
        f"{_fmt(timing.get('tokens_per_s'), 1)} tokens/s "
        f"({timing.get('train_seconds', '—')} s of training).",
    ]
    if after["checks"]:
        lines += ["", "## Checks", "", "| question | before | after |", "|---|---|---|"]
        for old, new in zip(before["checks"], after["checks"], strict=False):
            lines.append(f"| {_cell(new['question'])} | {_verdict(old)} | {_verdict(new)} |")
    return "\n".join(lines) + "\n"


def _verdict(check: dict[str, Any]) -> str:
    return ("✅ " if check["hit"] else "❌ ") + _cell(check["answer"])


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- helpers -----------------------------------------------------------------------------


def _collate(batch: Sequence[Tokenized], pad: int, device: str) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(item.input_ids) for item in batch)
    ids = [item.input_ids + [pad] * (width - len(item.input_ids)) for item in batch]
    labels = [item.labels + [IGNORE] * (width - len(item.labels)) for item in batch]
    mask = [[1] * len(item.input_ids) + [0] * (width - len(item.input_ids)) for item in batch]
    return (
        torch.tensor(ids, device=device),
        torch.tensor(labels, device=device),
        torch.tensor(mask, device=device),
    )


def _get_rng() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def _interruptible(trainer: Trainer) -> Iterator[Callable[[], bool]]:
    """Ctrl-C (or SIGTERM) asks the loop to stop after the current step, with a
    checkpoint; a second Ctrl-C stops at once."""

    def ask(signum: int, frame: object) -> None:
        trainer._stop = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        log.warning("stopping after this step (a checkpoint is saved first)")

    try:
        old = [signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)]
    except ValueError:  # not the main thread: no signal handling
        yield lambda: trainer._stop
        return
    try:
        yield lambda: trainer._stop
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])


class _Bar:
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def __call__(self, n: int, **postfix: float) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            self._bar.update(n)


@contextmanager
def _bar(enabled: bool, total: int, what: str, initial: int = 0) -> Iterator[_Bar]:
    if not enabled or total == 0:
        yield _Bar(None)
        return
    from tqdm import tqdm  # type: ignore[import-untyped]

    bar = tqdm(total=total, initial=initial, desc=what, unit="step" if what == "training" else "it")
    try:
        yield _Bar(bar)
    finally:
        bar.close()
