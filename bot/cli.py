"""The `switchboard` command line: serve, chat, kb, policy, finetune."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from contextlib import aclosing
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from bot.errors import ConfigError, SwitchboardError
from bot.llm.finetune.command import finetune_app
from bot.prompt_command import prompt_app
from bot.settings import Settings
from bot.types import InboundMessage, Message, Notice, Token

app = typer.Typer(
    help="Switchboard: a customer-service chatbot grounded in your help center.",
    no_args_is_help=True,
    add_completion=False,
)
kb_app = typer.Typer(help="Build and query the knowledge base.", no_args_is_help=True)
policy_app = typer.Typer(help="Check policy files.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.add_typer(policy_app, name="policy")
app.add_typer(finetune_app, name="finetune")
app.add_typer(prompt_app, name="prompt")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # Values are left out: a setting such as the Redis URL may carry a password.
        for error in exc.errors(include_input=False, include_url=False):
            name = "SWITCHBOARD_" + "__".join(str(part) for part in error["loc"]).upper()
            typer.secho(f"invalid setting {name}: {error['msg']}", fg="red", err=True)
        raise typer.Exit(2) from exc


def _logging(level: str, fmt: str = "text") -> None:
    from bot.observability import configure_logging

    configure_logging(level, fmt)
    if level != "debug":
        # presidio logs every recognizer it loads, and warns about each one for a language
        # we do not analyse: dozens of lines per start that say nothing to an operator.
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


def _check_store(settings: Settings) -> None:
    """Fail before loading anything when the configured Redis cannot be reached."""
    from bot.components import build_store

    if settings.redis_url is None:
        return  # the in-memory store cannot be unreachable

    async def check() -> None:
        store = build_store(settings)
        try:
            await store.start()
        finally:
            await store.close()

    try:
        asyncio.run(check())
    except SwitchboardError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(1) from exc


def _check_actions(settings: Settings) -> None:
    """Refuse a bad actions file before loading anything, naming each line and reason."""
    if settings.actions_file is None:
        return
    from bot.actions.schema import load_actions

    try:
        load_actions(settings.actions_file)
    except OSError as exc:
        typer.secho(f"error: cannot read the actions file: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except SwitchboardError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: settings]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: settings, 8000]")] = None,
) -> None:
    """Serve the API, the websocket chat and the demo page."""
    import uvicorn

    from bot.app import create_app

    settings = _settings()
    _logging(settings.log_level, settings.log_format)
    _check_store(settings)
    _check_actions(settings)
    app_ = create_app(settings)
    uvicorn.run(
        app_,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_level=settings.log_level,
        ws_ping_interval=20,
        # A chat frame is a few KB (messages are capped at max_message_chars).
        ws_max_size=64 * 1024,
        # The customer's address (for per-IP rate limits) comes from X-Forwarded-For only
        # when the proxy that sets it is trusted.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # JSON logs: uvicorn's own lines go through the root logger's JSON handler.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )


@app.command()
def chat(
    once: Annotated[str | None, typer.Option(help="Ask one question, print, exit.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final message as JSON.")
    ] = False,
) -> None:
    """Chat with the bot in the terminal (runs the pipeline in this process)."""
    settings = _settings()
    _logging("warning" if once else settings.log_level)
    try:
        asyncio.run(_chat(settings, once, as_json))
    except SwitchboardError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(1) from exc


async def _chat(settings: Settings, once: str | None, as_json: bool) -> None:
    from bot.components import build_components

    parts = build_components(settings)
    if not once:
        typer.echo("loading… (the first start prepares the model, about a minute)")
    await parts.start()
    try:
        conversation: str | None = None
        while True:
            text = once if once is not None else _prompt()
            if text is None:
                return
            inbound = InboundMessage(text, "cli", conversation)
            async with aclosing(parts.manager.respond(inbound)) as events:
                async for event in events:
                    if isinstance(event, Token) and not as_json:
                        print(event.text, end="", flush=True)
                    elif isinstance(event, Notice) and not as_json:
                        typer.secho(f"\n[{event.text}]", fg="yellow", err=True)
                    elif isinstance(event, Message):
                        conversation = event.conversation_id
                        _print_final(event, as_json)
            if once is not None:
                return
    finally:
        await parts.close()


def _prompt() -> str | None:
    try:
        text = input("\nyou> ")
    except (EOFError, KeyboardInterrupt):
        return None
    return text if text.strip() not in {"/quit", "/exit"} else None


def _print_final(message: Message, as_json: bool) -> None:
    if as_json:
        citations = [{"title": c.title, "source": c.source} for c in message.citations]
        print(
            json.dumps(
                {
                    "type": "message",
                    "id": message.id,
                    "text": message.text,
                    "citations": citations,
                    "conversation_id": message.conversation_id,
                },
                indent=2,
            )
        )
        return
    print()
    for citation in message.citations:
        typer.secho(f"  source: {citation.title} ({citation.source})", fg="cyan")


@kb_app.command("ingest")
def kb_ingest(
    path: Annotated[
        Path,
        typer.Argument(
            help="A folder (or file) of .md, .txt, .html and .pdf help articles; with --urls, "
            "the folder holding the saved pages."
        ),
    ],
    index_dir: Annotated[Path | None, typer.Option(help="[default: DATA_DIR/index]")] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Re-embed every document, changed or not.")
    ] = False,
    urls: Annotated[
        Path | None,
        typer.Option(
            help="A sitemap.xml or a file of URLs (one a line): index those pages, read from "
            "PATH (https://host/a/b -> PATH/a/b.html or PATH/a/b/index.html); nothing is fetched."
        ),
    ] = None,
) -> None:
    """Chunk, embed and index a folder of documents as a new index version (switched in
    atomically). Only new and changed documents are embedded unless --rebuild is given.
    Chunk size and overlap come from SWITCHBOARD_KNOWLEDGE__CHUNK_TOKENS / __CHUNK_OVERLAP."""
    from knowledge.embeddings import MiniLMEmbedder
    from knowledge.ingest import ingest

    settings = _settings()
    _logging("warning")
    target = index_dir or settings.index_dir
    try:
        report = ingest(
            path,
            target,
            MiniLMEmbedder(
                settings.knowledge.embedding_model, dtype=settings.knowledge.embedding_dtype
            ),
            rebuild=rebuild,
            urls=urls,
            max_tokens=settings.knowledge.chunk_tokens,
            overlap=settings.knowledge.chunk_overlap,
        )
    except (FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"indexed {report.documents} documents as {report.chunks} chunks "
        f"in {report.seconds:.1f}s -> {target} (version {report.version})\n"
        f"{report.added} added, {report.changed} changed, {report.unchanged} unchanged, "
        f"{report.removed} removed; {report.embedded} chunks embedded"
        + (" (full rebuild)" if report.rebuilt else "")
    )
    if report.skipped:
        typer.secho(f"{len(report.skipped)} skipped:", fg="yellow", err=True)
        for reason in report.skipped:
            typer.secho(f"  {reason}", fg="yellow", err=True)


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What a customer might ask.")],
    k: Annotated[int, typer.Option("-k", help="How many passages.")] = 4,
    index_dir: Annotated[Path | None, typer.Option(help="[default: DATA_DIR/index]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Show the passages the bot would retrieve for QUERY, and its confidence."""
    from bot.components import build_retriever
    from knowledge.embeddings import MiniLMEmbedder

    settings = _settings()
    _logging("warning")
    embedder = MiniLMEmbedder(
        settings.knowledge.embedding_model, dtype=settings.knowledge.embedding_dtype
    )
    retriever = build_retriever(settings, embedder, index_dir)
    try:
        retriever.warm_up()
    except (FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    passages, confidence = asyncio.run(retriever.search_with_confidence(query, k))
    if as_json:
        results = [
            {
                "rank": rank,
                "score": passage.score,
                "title": passage.citation.title,
                "source": passage.citation.source,
                "chunk_id": passage.chunk_id,
                "heading": passage.heading,
                "text": passage.text,
            }
            for rank, passage in enumerate(passages, start=1)
        ]
        report = {"query": query, "confidence": confidence, "threshold": retriever.threshold}
        print(json.dumps({**report, "results": results}, indent=2, ensure_ascii=False))
        return
    for rank, passage in enumerate(passages, start=1):
        typer.secho(
            f"{rank}. {passage.score:.3f}  {passage.citation.title}  ({passage.citation.source})",
            bold=True,
        )
        typer.echo("   " + passage.text.strip().replace("\n", " ")[:240])
    threshold = retriever.threshold
    if confidence is None or threshold is None:
        typer.echo("no abstention model: the bot always answers")
        return
    verdict = "answers" if confidence >= threshold else "says it does not know"
    typer.echo(f"confidence {confidence:.2f}: the bot {verdict} (threshold {threshold:.2f})")


@kb_app.command("eval")
def kb_eval(
    kb: Annotated[Path, typer.Option(help="A folder of help articles (indexed into a temp dir).")],
    questions: Annotated[
        Path, typer.Option(help="JSON lines with `question` and `gold_doc_ids` (file stems).")
    ],
    k: Annotated[int, typer.Option("-k", help="Passages per question for hit@k.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    fit_abstention: Annotated[
        Path | None,
        typer.Option(help="Fit the abstention model on half the questions, write it here."),
    ] = None,
) -> None:
    """Measure retrieval (hit@1, hit@k, recall@k, MRR@10) and abstention on labelled questions."""
    from dataclasses import asdict

    from knowledge.embeddings import MiniLMEmbedder
    from knowledge.evaluate import evaluate_folder

    settings = _settings()
    _logging("warning")
    embedder = MiniLMEmbedder(
        settings.knowledge.embedding_model, dtype=settings.knowledge.embedding_dtype
    )
    try:
        report = asyncio.run(evaluate_folder(kb, questions, embedder, k=k, fit_to=fit_abstention))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps(asdict(report), indent=2))
        return
    typer.echo(f"{report.questions} questions, {report.answerable} answerable")
    for name, value in [
        ("hit@1", report.hit_at_1),
        (f"hit@{k}", report.hit_at_k),
        (f"recall@{k}", report.recall_at_k),
        ("MRR@10", report.mrr_at_10),
        ("abstention AUROC", report.auroc),
        ("  (top-1 cosine AUROC)", report.baseline_auroc),
        ("abstains on unanswerable", report.abstain_accuracy_unanswerable),
        ("answers answerable", report.answer_accuracy_answerable),
    ]:
        typer.echo(f"{name:<26} {value:.3f}")
    for note in report.notes:
        typer.echo(note)


@app.command("eval")
def eval_suite(
    suite_file: Annotated[
        Path, typer.Argument(metavar="SUITE.yaml", help="A suite of scripted conversations.")
    ],
    junit: Annotated[
        Path | None, typer.Option(help="Also write the results as JUnit XML to this file.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON instead of the report.")
    ] = False,
) -> None:
    """Run scripted conversations through the real pipeline (this process, the current
    settings and model) and check each turn: contains / contains_any / not_contains, cites,
    abstains, hands_off, redacts, blocked, kind, max_seconds. See demo/eval/suite.yaml.
    Exit code: 0 every turn passed, 1 an expectation failed, 2 the suite could not run."""
    from bot.evals import (
        TurnResult,
        junit_xml,
        load_suite,
        render_summary,
        render_turn,
        result_json,
        run_with_settings,
    )
    from bot.files import write_atomically

    try:
        suite = load_suite(suite_file)  # before any model loads: a typo costs no minute
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:
        typer.secho(f"{suite_file}: cannot read: {exc.strerror}", fg="red", err=True)
        raise typer.Exit(2) from exc
    settings = _settings()
    _logging("warning")
    shown: list[str] = []

    def show(conversation: str, turn: TurnResult) -> None:
        if as_json:
            return
        if not shown or shown[-1] != conversation:
            shown.append(conversation)
            typer.secho(conversation, bold=True)
        typer.secho(render_turn(turn), fg="green" if turn.passed else "red")

    try:
        result = asyncio.run(run_with_settings(settings, suite, show))
    except SwitchboardError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if junit is not None:
        write_atomically(junit, junit_xml(result, suite_file.stem))
    if as_json:
        print(json.dumps(result_json(result), indent=2, ensure_ascii=False))
    else:
        typer.secho(render_summary(result), fg="red" if result.failed else "green", bold=True)
    raise typer.Exit(result.exit_code)


@policy_app.command("check")
def policy_check(file: Annotated[Path, typer.Argument(help="A policy YAML file.")]) -> None:
    """Validate a policy file; print every error with its line, exit 1 if any."""
    from policies.schema import load_policy

    try:
        policy = load_policy(file)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from exc
    except OSError as exc:
        typer.secho(f"{file}: cannot read: {exc.strerror}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{file}: ok (version {policy.version}, {len(policy.pii.entities)} PII types)")


@policy_app.command("schema")
def policy_schema() -> None:
    """Print the policy file's JSON Schema (for editors)."""
    from policies.schema import policy_json_schema

    print(json.dumps(policy_json_schema(), indent=2))


def main() -> None:
    """Entry point of the `switchboard` console script."""
    app(prog_name="switchboard")


if __name__ == "__main__" and sys.argv:
    main()
