"""`switchboard prompt check FILE` and `switchboard prompt render --question "..."`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.errors import SwitchboardError

prompt_app = typer.Typer(help="Check and render the prompt file.", no_args_is_help=True)


@prompt_app.command("check")
def prompt_check(file: Annotated[Path, typer.Argument(help="A prompt YAML file.")]) -> None:
    """Validate a prompt file: every problem with its line; exit 2 on any."""
    from bot.cli import _settings
    from bot.prompt_file import load_prompt

    settings = _settings()
    try:
        load_prompt(file, settings.company_name)
    except SwitchboardError as exc:
        typer.secho(exc.message, fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{file}: ok")


@prompt_app.command("render")
def prompt_render(
    question: Annotated[str, typer.Option(help="The customer's message.")],
    channel: Annotated[str, typer.Option(help="web, rest, slack, or a webhook's name.")] = "web",
    summary: Annotated[str, typer.Option(help="A conversation summary to include.")] = "",
    file: Annotated[
        Path | None,
        typer.Option(help="A prompt file to try [default: SWITCHBOARD_PROMPT_FILE or bundled]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the messages as JSON.")] = False,
) -> None:
    """Print the exact prompt the model would get for a question: the message redacted by
    the input policy, the passages retrieval finds (screened by the policy), the prompt
    file's template, examples and token budget."""
    from bot.cli import _logging, _settings

    settings = _settings()
    _logging("warning")
    try:
        shown = asyncio.run(_render(settings, question, channel, summary, file))
    except SwitchboardError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return
    for note in shown["notes"]:
        typer.secho(note, fg="yellow", err=True)
    for message in shown["messages"]:
        typer.secho(f"── {message['role']} ──", fg="cyan")
        print(message["content"])
    typer.secho(f"── {shown['tokens']} tokens ({shown['counted']}) ──", fg="cyan")


async def _render(
    settings: Any, question: str, channel: str, summary: str, file: Path | None
) -> dict[str, Any]:
    from bot.components import build_retriever
    from bot.llm.base import ChatMessage
    from bot.prompt import build_prompt
    from bot.prompt_file import load_prompt
    from knowledge.embeddings import MiniLMEmbedder
    from policies.base import Context
    from policies.engine import PolicyEngine
    from policies.verdicts import Block

    prompts = load_prompt(file or settings.prompt_file, settings.company_name)
    embedder = MiniLMEmbedder(
        settings.knowledge.embedding_model, dtype=settings.knowledge.embedding_dtype
    )
    policies = PolicyEngine.from_file(settings.policy_file, embedder=embedder)
    notes: list[str] = []
    try:
        await asyncio.to_thread(embedder.warm_up)
        await asyncio.to_thread(policies.warm_up)
        verdict = await policies.check_input(question, Context("input", channel=channel))
        if isinstance(verdict, Block):
            notes.append(f"the input policy blocks this message ({verdict.reason}); the reply "
                         f"would be: {verdict.reply}")  # fmt: skip
            text = question
        else:
            text = verdict.text
        retriever = build_retriever(settings, embedder)
        try:
            await asyncio.to_thread(retriever.warm_up)
            found, confidence = await retriever.search_with_confidence(
                text, settings.knowledge.top_k
            )
        except (FileNotFoundError, ValueError) as exc:
            notes.append(f"no knowledge base ({exc}); the prompt has no passages")
            found, confidence = [], None
        threshold = retriever.threshold
        abstain = settings.knowledge.abstain and confidence is not None and threshold is not None
        if abstain and confidence < threshold:  # type: ignore[operator]
            notes.append(
                f"retrieval confidence {confidence:.2f} is below the threshold "
                f"{threshold:.2f}: the bot would answer 'I don't know' without the model"
            )
        passages = await policies.screen_passages(found, Context("retrieval", channel=channel))
    finally:
        policies.close()
    count, counted = _counter(settings)
    prompt = build_prompt(
        prompts=prompts,
        channel=channel,
        summary=summary,
        question=text,
        passages=passages,
        history=[],
        budget=settings.llm.prompt_token_budget,
        count_tokens=count,
    )
    messages: list[ChatMessage] = prompt.messages
    return {
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "tokens": count(messages),
        "counted": counted,
        "passages": [p.citation.source for p in prompt.passages],
        "notes": notes,
    }


def _counter(settings: Any) -> tuple[Any, str]:
    """Token counting as the engine does it: the model's tokenizer and chat template when
    it can be loaded here, else the remote engine's estimate."""
    from bot.llm.base import chat_template_ids

    try:
        from transformers import AutoTokenizer

        from bot.llm.transformers_engine import resolve_model_path

        if settings.llm.engine == "openai":
            source = settings.llm.tokenizer
            if source is None:
                raise LookupError
        else:
            source = resolve_model_path(settings.llm, settings.model_cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(source)
        return (lambda messages: len(chat_template_ids(tokenizer, messages))), "model tokenizer"
    except (LookupError, OSError, ValueError, SwitchboardError):
        # The remote engine's estimate (bot/llm/openai_engine.py): a quarter of the
        # characters plus a few tokens per message.
        return (lambda ms: sum((len(m.content) + 3) // 4 + 4 for m in ms) + 3), "estimated"
