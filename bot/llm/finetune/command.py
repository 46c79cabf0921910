"""`switchboard finetune` (train a LoRA adapter) and `switchboard finetune export`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.errors import SwitchboardError
from bot.settings import Settings

finetune_app = typer.Typer(
    help="Fine-tune the local model on your own conversations and FAQs (LoRA, privately).",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _fail(exc: SwitchboardError, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {exc.message}", fg="red", err=True)
    return typer.Exit(code)


@contextmanager
def _storage_point(policy_file: Path | None) -> Iterator[Callable[[str], tuple[str, list[str]]]]:
    """The policy's `storage` point as a plain function: text -> (redacted, entity types)."""
    from policies.engine import PolicyEngine

    engine = PolicyEngine.from_file(policy_file)
    loop = asyncio.new_event_loop()
    try:
        engine.warm_up()

        def redact(text: str) -> tuple[str, list[str]]:
            redaction = loop.run_until_complete(engine.storage_redaction(text))
            return redaction.text, [found.entity_type for found in redaction.entities]

        yield redact
    finally:
        engine.close()
        loop.close()


@finetune_app.callback()
def finetune(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help='Chat-format JSONL: one {"messages": [...]} per line (see README).'),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the adapter, its report and checkpoints.")
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            help="Base model: the built-in default, a model folder or a hub id "
            "[default: SWITCHBOARD_LLM__MODEL]."
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Passes over the data [default: 3].")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Optimizer steps (instead of --epochs).")
    ] = None,
    eval_split: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of examples held out for evaluation.")
    ] = 0.1,
    check: Annotated[
        Path | None,
        typer.Option(
            help='JSONL of {"question": ..., "expected": "fact"}: the share of answers '
            "stating the fact, before and after."
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="Policy YAML whose pii section redacts the data "
            "[default: SWITCHBOARD_POLICY_FILE, else the bundled policy]."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same adapter.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 2e-4,
    lora_r: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 16,
    lora_alpha: Annotated[int, typer.Option(min=1)] = 32,
    lora_dropout: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.05,
    target_modules: Annotated[
        str, typer.Option(help="'all-linear' or comma-separated module names (q_proj,v_proj).")
    ] = "all-linear",
    max_tokens: Annotated[
        int, typer.Option(min=16, help="Longest example in tokens (longer ones are cut).")
    ] = 1024,
    save_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = 50,
    merge: Annotated[
        bool, typer.Option(help="Also write OUT/merged: the base model with the adapter folded in.")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue the interrupted run in OUT from its last checkpoint.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace whatever OUT holds.")] = False,
    device: Annotated[
        str, typer.Option(help="auto (GPU with bf16 when present), cpu or cuda.")
    ] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune the model with LoRA on chat-format JSONL; every example is redacted by
    the policy's storage point first. Writes the adapter, report.json and report.md to
    OUT; serve it with SWITCHBOARD_LLM__ADAPTER=OUT."""
    if ctx.invoked_subcommand is not None:
        return
    if data is None or out is None:
        typer.secho(
            "error: --data and --out are required (or use `switchboard finetune export`); "
            "see `switchboard finetune --help`",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    if epochs is not None and steps is not None:
        typer.secho("error: give --epochs or --steps, not both", fg="red", err=True)
        raise typer.Exit(2)
    if device not in ("auto", "cpu", "cuda"):
        typer.secho("error: --device must be auto, cpu or cuda", fg="red", err=True)
        raise typer.Exit(2)
    from bot.cli import _logging, _settings
    from bot.llm.finetune.train import FinetuneConfig, Interrupted, Trainer
    from bot.llm.transformers_engine import resolve_model_path

    settings = _settings()
    _logging("warning" if settings.log_level == "info" else settings.log_level)
    base_name = base or settings.llm.model
    config = FinetuneConfig(
        data=data,
        out=out,
        base=base_name,
        epochs=epochs,
        steps=steps,
        eval_split=eval_split,
        seed=seed,
        batch_size=batch_size,
        learning_rate=learning_rate,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        max_tokens=max_tokens,
        save_every=save_every,
        check=check,
        merge=merge,
        resume=resume,
        overwrite=overwrite,
        device=device,
    )
    try:
        with _storage_point(policy or settings.policy_file) as redact:
            model_path = resolve_model_path(
                settings.llm.model_copy(update={"model": base_name}), settings.model_cache_dir
            )
            result = Trainer(config, model_path, redact, progress=progress).run()
    except Interrupted as exc:
        typer.secho(exc.message, fg="yellow", err=True)
        raise typer.Exit(130) from exc
    except SwitchboardError as exc:
        raise _fail(exc, 2) from exc
    _summary(result.report)
    typer.echo(f"adapter: {out}  (serve it: SWITCHBOARD_LLM__ADAPTER={out} switchboard serve)")
    if merge:
        typer.echo(f"merged model: {out / 'merged'}  (SWITCHBOARD_LLM__MODEL={out / 'merged'})")


def _summary(report: dict[str, Any]) -> None:
    before, after = report["before"], report["after"]
    privacy, timing = report["privacy"], report["timing"]

    def num(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    typer.echo(
        f"eval loss {num(before['eval_loss'])} -> {num(after['eval_loss'])}, perplexity "
        f"{num(before['perplexity'], 2)} -> {num(after['perplexity'], 2)}"
    )
    if after["check_share"] is not None:
        typer.echo(
            f"checks: {before['check_share']:.0%} -> {after['check_share']:.0%} of answers "
            "state the expected fact"
        )
    typer.echo(
        f"privacy: {privacy['entities_removed']} PII entities removed before tokenizing "
        f"{privacy['entities_by_type'] or ''}"
    )
    typer.echo(
        f"speed: {num(timing.get('steps_per_s'))} steps/s, {num(timing.get('tokens_per_s'), 1)} "
        f"tokens/s; report: {report['adapter']}/report.md"
    )


@finetune_app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="The JSONL file to write.")],
    policy: Annotated[
        Path | None,
        typer.Option(
            help="Policy YAML whose pii section redacts every example "
            "[default: SWITCHBOARD_POLICY_FILE]; required."
        ),
    ] = None,
    kb: Annotated[
        list[Path] | None,
        typer.Option(
            help="A file or folder of FAQ-style articles (headings that are "
            "questions, or Q:/A: blocks); repeatable."
        ),
    ] = None,
    conversations: Annotated[
        bool,
        typer.Option(help="Export stored conversations (Redis) that were resolved or rated 👍."),
    ] = True,
    since_days: Annotated[
        float | None, typer.Option(min=0.0, help="Only conversations updated in the last N days.")
    ] = None,
) -> None:
    """Write training JSONL from stored conversations (resolved or rated 👍) and FAQ
    articles, every message redacted by the policy file's pii section."""
    from bot.cli import _settings

    settings = _settings()
    policy_file = policy or settings.policy_file
    if policy_file is None:
        typer.secho(
            "error: export needs a policy file (--policy FILE or SWITCHBOARD_POLICY_FILE): its "
            "pii section redacts every example before it is written",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    if conversations and settings.redis_url is None and not kb:
        typer.secho(
            "error: nothing to export: SWITCHBOARD_REDIS_URL is unset (conversations live in "
            "Redis) and no --kb was given",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    since = time.time() - since_days * 86400 if since_days is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        summary = asyncio.run(_export(settings, out, policy_file, kb or [], conversations, since))
    except SwitchboardError as exc:
        raise _fail(exc, 2) from exc
    typer.echo(
        f"{summary.examples} examples written to {out}: {summary.conversations} conversations "
        f"({summary.skipped} not resolved or rated up were skipped), {summary.faq} FAQ answers"
    )
    removed = sum(summary.entities.values())
    typer.echo(f"privacy: {removed} PII entities removed {dict(summary.entities) or ''}")


async def _export(
    settings: Settings,
    out: Path,
    policy_file: Path,
    kb: Sequence[Path],
    conversations: bool,
    since: float | None,
) -> Any:
    from tqdm import tqdm  # type: ignore[import-untyped]

    from bot.llm.finetune.export import export_examples, kb_vocabulary
    from policies.engine import PolicyEngine

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    words = kb_vocabulary(kb)
    engine = PolicyEngine.from_file(policy_file, vocabulary=lambda: words)
    await asyncio.to_thread(engine.warm_up)
    redis: Any = None
    if conversations and settings.redis_url is not None:
        import redis.asyncio as aioredis

        redis = aioredis.Redis.from_url(
            settings.redis_url.get_secret_value(), decode_responses=True, socket_timeout=10
        )
    try:
        with tqdm(desc="exporting", unit="item") as bar:
            return await export_examples(
                out,
                engine,
                redis=redis,
                prefix=settings.key_prefix,
                kb=kb,
                since=since,
                progress=bar.update,
            )
    finally:
        if redis is not None:
            await redis.aclose()
        engine.close()
