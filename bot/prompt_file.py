"""The bot's prompt as configuration: a versioned YAML file (`SWITCHBOARD_PROMPT_FILE`).

It holds the persona and tone, the system prompt template (Jinja2, sandboxed, strict about
unknown variables), answer rules, the answer format per channel, few-shot exchanges, the
"I don't know" and handoff wording, and the languages the bot answers in. It is validated
like the policy file — every problem named with its line — and reloaded without a restart
when it changes. `bot/prompt_default.yaml` is the bundled default: it documents every field
and renders exactly the prompt Switchboard used before the file existed.

Template variables: `company`, `persona`, `tone`, `rules` (`cite_sources`, `max_sentences`),
`format` (the channel's format instruction, "" when none), `languages`, `channel`,
`summary` (the running summary of a long conversation, "" when none), `passages` (a list
of `rank`, `title`, `source`, `text`) and `redacted` (true when the conversation holds text
replaced for privacy, such as <EMAIL_ADDRESS>: only then does the model hear of it, so it
has no placeholder to parrot).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, field_validator

from bot.errors import ConfigError
from policies.base import Strict
from policies.yaml_lines import Problem, YamlFileError, locate, validate_yaml

log = logging.getLogger(__name__)

VARIABLES = frozenset(
    (
        "company",
        "persona",
        "tone",
        "rules",
        "format",
        "languages",
        "channel",
        "summary",
        "passages",
        "redacted",
    )
)
_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)


class Rules(Strict):
    cite_sources: bool = Field(
        False, description="Ask the model to name the article each fact comes from."
    )
    max_sentences: int | None = Field(None, ge=1, le=20, description="Longest answer.")


class Example(Strict):
    user: str = Field(min_length=1)
    assistant: str = Field(min_length=1)


class Wording(Strict):
    no_answer: str | None = Field(
        None, description="The 'I don't know' reply (default: the policy file's messages)."
    )
    handoff: str | None = Field(None, description="Said when a person is asked for.")
    unsure: str = Field(
        "I'm not sure this answers your question. If it doesn't, I can connect you with a person.",
        min_length=1,
        description="Said after a quoted answer the bot is not sure of (answers.sure_score).",
    )


class PromptFile(Strict):
    """One prompt file."""

    version: Literal[1]
    company: str | None = Field(None, description="Default: SWITCHBOARD_COMPANY_NAME.")
    persona: str = "the customer-support assistant of {company}"
    tone: str = "Be brief, friendly and specific:"
    languages: list[str] = Field(default_factory=list)
    rules: Rules = Field(default_factory=Rules)
    formats: dict[str, str] = Field(default_factory=dict)
    examples: list[Example] = Field(default_factory=list)
    wording: Wording = Field(default_factory=Wording)
    system: str = Field(min_length=1)

    @field_validator("formats")
    @classmethod
    def _channels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"{name!r}: a channel name is letters, digits, '-' and '_'")
        return value

    def format_for(self, channel: str) -> str:
        return self.formats.get(channel, self.formats.get("default", ""))


class PromptFileError(YamlFileError):
    """A prompt file is unusable; the message names each problem's line."""

    code = "prompt_file_error"


class Prompts:
    """A validated prompt file with its template compiled, ready to render."""

    def __init__(self, config: PromptFile, company: str, digest: str = "") -> None:
        self.config = config
        self.company = config.company or company
        self.digest = digest
        self._template = _ENV.from_string(config.system)

    def system(
        self,
        channel: str,
        passages: list[dict[str, Any]],
        summary: str = "",
        redacted: bool = False,
    ) -> str:
        config = self.config
        return self._template.render(
            company=self.company,
            persona=config.persona.replace("{company}", self.company),
            tone=config.tone,
            rules=config.rules,
            format=config.format_for(channel),
            languages=config.languages,
            channel=channel,
            summary=summary,
            passages=passages,
            redacted=redacted,
        ).strip()


def default_prompt_path() -> Path:
    return Path(__file__).with_name("prompt_default.yaml")


def parse_prompt(text: str, filename: str, company: str) -> Prompts:
    """Validate prompt YAML `text`; raise `PromptFileError` listing every problem."""
    config, root = validate_yaml(
        text, PromptFile, filename, PromptFileError, "keys, starting with 'version: 1'"
    )
    _check_template(root, config, filename, company)
    return Prompts(config, company, hashlib.sha256(text.encode()).hexdigest())


def _check_template(root: yaml.Node, config: PromptFile, filename: str, company: str) -> None:
    """Syntax, unknown variables and a trial render, each error at the template's line."""
    key_line = locate(root, ["system"])
    # A block scalar (`system: |`) starts on the line after its key.
    block = isinstance(root, yaml.MappingNode) and any(
        k.value == "system" and getattr(v, "style", None) in ("|", ">") for k, v in root.value
    )
    first = key_line + 1 if block else key_line

    def fail(line: int, reason: str) -> PromptFileError:
        return PromptFileError(filename, [Problem(line, "system", reason)])

    try:
        ast = _ENV.parse(config.system)
        _ENV.from_string(config.system)  # compiling finds unknown filters and tests
    except TemplateSyntaxError as exc:
        raise fail(first + (exc.lineno or 1) - 1, f"template syntax: {exc.message}") from exc
    unknown = sorted(meta.find_undeclared_variables(ast) - VARIABLES)
    if unknown:
        line = next(
            (first + i for i, text in enumerate(config.system.splitlines()) if unknown[0] in text),
            first,
        )
        raise fail(
            line,
            f"unknown variable {unknown[0]!r}; the template may use: "
            + ", ".join(sorted(VARIABLES)),
        )
    sample = [{"rank": 1, "title": "Returns", "source": "returns.md", "text": "30 days."}]
    try:
        Prompts(config, company).system("web", sample, "The customer asked about a refund.", True)
    except (UndefinedError, SecurityError, TypeError, ValueError) as exc:
        raise fail(first, f"the template cannot be rendered: {exc}") from exc


def load_prompt(path: Path | None, company: str) -> Prompts:
    """The prompt file at `path` (the bundled default when None), validated."""
    path = path or default_prompt_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the prompt file {path}: {exc.strerror or exc}") from exc
    return parse_prompt(text, str(path), company)
