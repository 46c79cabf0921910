"""The versioned policy file: its pydantic schema, and loading it with line-accurate errors.

A bad file is refused at start-up and by `switchboard policy check FILE`; every error names
the line, the key and the reason, so the person who edits the file can fix it alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from policies.base import Strict
from policies.grounding import GroundingRules
from policies.handoff import HandoffRules
from policies.harm import ClaimsRules, HarmRules
from policies.injection import InjectionRules
from policies.limits import LimitRules
from policies.links import LinkRules
from policies.pii_rules import (  # noqa: F401  (re-exported: the schema's public names)
    DEFAULT_ENTITIES,
    KNOWN_ENTITY_TYPES,
    NonEmptyText,
    PiiPolicy,
)
from policies.scrub import ScrubRules
from policies.topics import TopicRules
from policies.toxicity import ToxicityRules
from policies.yaml_lines import (
    Problem,
    YamlFileError,
    YamlSyntaxError,
    compose,
    duplicate_keys,
    locate,
)
from policies.yaml_lines import problem_from as _problem

Version = Literal[1]  # add a version here when the file format changes
SUPPORTED_VERSIONS: tuple[int, ...] = get_args(Version)


class OutputPolicy(Strict):
    """How the streaming filter treats the model's answer before the user sees it."""

    # Must stay well above the 40-character tail the filter always keeps back.
    max_hold_chars: int = Field(400, ge=80, le=20_000)


class Messages(Strict):
    """Fixed replies the bot sends when it cannot or may not answer."""

    fallback: NonEmptyText = (
        "Sorry — I can't answer that right now. Would you like to talk to a person?"
    )
    blocked: NonEmptyText = (
        "Sorry — I can't help with that here. Would you like to talk to a person?"
    )
    no_answer: NonEmptyText = (
        "I don't know the answer to that, and I'd rather not guess. "
        "Would you like to talk to a person?"
    )
    handoff: NonEmptyText = "I've asked a person to join this conversation; they'll reply here."
    agent_joined: NonEmptyText = "{name} has joined the conversation."
    bot_back: NonEmptyText = "You're back with the assistant."
    closed: NonEmptyText = (
        "This conversation is closed. Write again any time and the assistant will answer."
    )


StageName = Literal[
    "pii",
    "injection",
    "harm",
    "toxicity",
    "topics",
    "limits",
    "links",
    "claims",
    "handoff",
    "scrub",
]
# Which stages make sense where. Storage is always redacted: nothing un-redacted is stored.
ALLOWED_STAGES: dict[str, frozenset[str]] = {
    "input": frozenset({"limits", "pii", "injection", "harm", "toxicity", "topics", "handoff"}),
    "retrieval": frozenset({"pii", "injection", "toxicity"}),
    "output": frozenset({"pii", "links", "claims", "toxicity", "limits"}),
    "storage": frozenset({"pii", "scrub"}),
}


def _names(*names: StageName) -> list[StageName]:
    return list(names)


class Stages(Strict):
    """Which stages run at each point of a turn, in order."""

    input: list[StageName] = Field(
        default_factory=lambda: _names(
            "limits", "pii", "injection", "harm", "toxicity", "topics", "handoff"
        )
    )
    retrieval: list[StageName] = Field(default_factory=lambda: _names("pii", "injection"))
    output: list[StageName] = Field(
        default_factory=lambda: _names("pii", "links", "claims", "toxicity", "limits")
    )
    storage: list[StageName] = Field(default_factory=lambda: _names("pii", "scrub"))

    @model_validator(mode="after")
    def _placed(self) -> Stages:
        for point, allowed in ALLOWED_STAGES.items():
            names: list[str] = getattr(self, point)
            for name in names:
                if name not in allowed:
                    raise ValueError(
                        f"{name} cannot run at {point}; {point} takes: "
                        + ", ".join(sorted(allowed))
                    )
            if len(set(names)) != len(names):
                raise ValueError(f"{point} lists a stage twice")
        if "pii" not in self.storage:
            raise ValueError("storage must include pii: nothing un-redacted is stored")
        if self.storage[0] != "pii":
            raise ValueError("storage must start with pii (scrub is a second net after it)")
        return self


# The sections a channel may override (everything but `version` and `channels` itself).
OVERRIDABLE = (
    "pii", "injection", "harm", "toxicity", "topics", "limits", "links", "claims", "handoff",
    "stages", "output", "messages", "grounding", "scrub",
)  # fmt: skip


class PolicyFile(Strict):
    """One policy file, as written by the company that runs the bot."""

    version: Version
    pii: PiiPolicy = Field(default_factory=PiiPolicy)
    injection: InjectionRules = Field(default_factory=InjectionRules)
    harm: HarmRules = Field(default_factory=HarmRules)
    claims: ClaimsRules = Field(default_factory=ClaimsRules)
    toxicity: ToxicityRules = Field(default_factory=ToxicityRules)
    topics: TopicRules = Field(default_factory=TopicRules)
    limits: LimitRules = Field(default_factory=LimitRules)
    links: LinkRules = Field(default_factory=LinkRules)
    handoff: HandoffRules = Field(default_factory=HandoffRules)
    scrub: ScrubRules = Field(default_factory=ScrubRules)
    stages: Stages = Field(default_factory=Stages)
    output: OutputPolicy = Field(default_factory=OutputPolicy)
    grounding: GroundingRules = Field(default_factory=GroundingRules)
    messages: Messages = Field(default_factory=Messages)
    # Per-channel changes ("widget", "slack", "webhook", "api"): any sections above, merged
    # key by key over the rest of the file for messages on that channel.
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("channels", mode="after")
    @classmethod
    def _sections(cls, channels: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, override in channels.items():
            if not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
                raise ValueError(f"channel name {name!r}: use lowercase letters, digits, - or _")
            unknown = sorted(set(override) - set(OVERRIDABLE))
            if unknown:
                raise ValueError(
                    f"channel {name!r} overrides unknown section {unknown[0]!r}; "
                    "it may override: " + ", ".join(OVERRIDABLE)
                )
        return channels

    _per_channel: dict[str, PolicyFile] = PrivateAttr(default_factory=dict)

    def for_channel(self, channel: str | None) -> PolicyFile:
        """The policy for messages on `channel`: this file with that channel's overrides.

        Raises pydantic's `ValidationError` for an override that does not validate;
        `parse_policy` checks every channel, so a loaded file never does."""
        override = self.channels.get(channel or "")
        if not override:
            return self
        cached = self._per_channel.get(channel or "")
        if cached is None:
            merged = _merge(self.model_dump(exclude={"channels"}), override)
            cached = self._per_channel[channel or ""] = PolicyFile.model_validate(merged)
        return cached


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value  # lists replace: an override's allow-list is the whole list
    return merged


class PolicyFileError(YamlFileError):
    """A policy file is unusable; `.errors` holds (line, location, reason) for each problem."""

    code = "policy_file_error"


def parse_policy(text: str, filename: str = "<policy>") -> PolicyFile:
    """Validate policy YAML `text`; raise `PolicyFileError` listing every problem."""
    try:
        root, data = compose(text)
    except YamlSyntaxError as exc:
        raise PolicyFileError(filename, exc.problems) from exc
    if root is None:
        raise PolicyFileError(
            filename, [Problem(1, "(file)", "the file is empty; start with 'version: 1'")]
        )
    if not isinstance(data, dict):
        kind = type(data).__name__ if not isinstance(data, list) else "a list"
        reason = f"expected a mapping of keys (version, pii, output, messages), got {kind}"
        raise PolicyFileError(filename, [Problem(locate(root, ()), "(top level)", reason)])
    if problems := duplicate_keys(root):
        raise PolicyFileError(filename, problems)
    version = data.get("version")
    if "version" in data and (type(version) is not int or version not in SUPPORTED_VERSIONS):
        # A file for another version would drown in unknown-key errors; say the one that matters.
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        reason = f"unsupported version {version!r}; supported versions: {supported}"
        raise PolicyFileError(filename, [Problem(locate(root, ["version"]), "version", reason)])
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(root, error) for error in exc.errors(include_url=False)]
        raise PolicyFileError(filename, sorted(problems, key=lambda p: p.line)) from exc
    problems = []
    for channel, override in policy.channels.items():
        try:
            policy.for_channel(channel)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                # Point at the override's line when the bad key is in it, else the base's.
                loc = list(error["loc"])
                inside = _has_path(override, loc)
                at = ["channels", channel, *loc] if inside else loc
                problem = _problem(root, {**error, "loc": tuple(at)})
                if not inside:
                    problem = Problem(
                        problem.line, problem.location, f"{problem.reason} (in channel {channel})"
                    )
                problems.append(problem)
    if problems:
        raise PolicyFileError(filename, sorted(problems, key=lambda p: p.line))
    return policy


def _has_path(data: Any, loc: list[Any]) -> bool:
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_dict or in_list):
            return False
        data = data[part]
    return True


def load_policy(path: str | Path) -> PolicyFile:
    """Read and validate a policy file (UTF-8). `OSError` propagates for unreadable files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError(str(path), [Problem(1, "(file)", "not UTF-8 text")]) from exc
    return parse_policy(text, str(path))


def default_policy_path() -> Path:
    """The policy file bundled with Switchboard, used when settings name none."""
    return Path(__file__).with_name("default.yaml")


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, for editors and `switchboard policy schema`."""
    return PolicyFile.model_json_schema()
