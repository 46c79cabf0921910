"""The actions file: which business actions the bot can run, and when.

```yaml
version: 1
server:
  url: http://127.0.0.1:5055      # a Rasa action server (rasa-sdk)
  timeout_s: 10
intents:
  - name: order_status
    examples: ["where is my order", "track my order 12345"]
    threshold: 0.72           # at or above: the intent is matched
    confirm_above: 0.6        # between this and threshold: "Did you mean ...?"
    description: check an order's status          # used in "Did you mean to check ...?"
    slots:
      - name: order_id
        pattern: '\\b\\d{5}\\b'   # filled from the message when it matches
        prompt: "What's your order number?"
    action: action_order_status
    confirm: "Cancel order {order_id}? (yes/no)"   # optional: asked before running
```

Validated with pydantic (`extra="forbid"`); every problem is reported with its line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.yaml_lines import Problem, YamlFileError, validate_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    url: str | None = Field(
        None, description="A running action server's root, e.g. http://actions:5055."
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="One action call.")
    # Or: Switchboard runs rasa-sdk's own server for an actions package itself, in a
    # Python environment of its own (rasa-sdk's pins would hold back Switchboard's).
    package: str | None = Field(
        None, description="An actions package (module name) that Switchboard serves itself."
    )
    directory: str = Field(".", description="Where the package is (relative to this file).")
    python: str = Field(
        "python3", description="The Python of an environment with rasa-sdk installed."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return None if value is None else value.rstrip("/")

    @model_validator(mode="after")
    def _one_server(self) -> ServerConfig:
        if (self.url is None) == (self.package is None):
            raise ValueError("give either url (a running action server) or package (served here)")
        return self


class SlotConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    pattern: str | None = Field(
        None, description="A regex: its first group (or whole match) fills the slot."
    )
    prompt: str = Field(min_length=1, description="Asked when the slot is still empty.")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class IntentConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    examples: list[str] = Field(min_length=1)
    action: str = Field(min_length=1, description="The action server's action name.")
    threshold: float = Field(0.72, gt=0, le=1)
    confirm_above: float | None = Field(
        None, gt=0, le=1, description="Ask 'Did you mean ...?' between this and threshold."
    )
    description: str = Field("", description="Words for 'Did you mean to ...?'.")
    slots: list[SlotConfig] = Field(default_factory=list)
    confirm: str | None = Field(
        None, description="Asked (with the slots filled in) before the action runs."
    )

    @model_validator(mode="after")
    def _bands(self) -> IntentConfig:
        if self.confirm_above is not None and self.confirm_above >= self.threshold:
            raise ValueError(
                f"confirm_above ({self.confirm_above}) must be below threshold ({self.threshold})"
            )
        names = [slot.name for slot in self.slots]
        if len(set(names)) != len(names):
            raise ValueError("slot names must be unique within an intent")
        return self


class ActionsFile(_Strict):
    version: int = 1
    server: ServerConfig
    intents: list[IntentConfig] = Field(default_factory=list)
    max_followups: int = Field(5, ge=0, le=20, description="Chained followup actions per turn.")
    yes: list[str] = Field(
        default_factory=lambda: [
            "yes",
            "y",
            "yeah",
            "yep",
            "sure",
            "ok",
            "okay",
            "correct",
            "please do",
            "confirm",
        ]
    )
    no: list[str] = Field(
        default_factory=lambda: [
            "no",
            "n",
            "nope",
            "cancel",
            "stop",
            "don't",
            "do not",
            "never mind",
        ]
    )
    failure: str = Field(
        "Sorry — I couldn't complete that right now. Would you like to talk to a person?",
        description="Said when the action server is down, slow or fails.",
    )

    @model_validator(mode="after")
    def _unique(self) -> ActionsFile:
        names = [intent.name for intent in self.intents]
        if len(set(names)) != len(names):
            raise ValueError("intent names must be unique")
        return self


class ActionsFileError(YamlFileError):
    """An actions file is unusable; one line per problem, with its line number."""

    code = "actions_file_error"


def parse_actions(text: str, filename: str = "<actions>") -> ActionsFile:
    expected = "keys: version, server, intents"
    return validate_yaml(text, ActionsFile, filename, ActionsFileError, expected)[0]


def load_actions(path: str | Path) -> ActionsFile:
    path = Path(path)
    try:
        config = parse_actions(path.read_text(encoding="utf-8"), str(path))
        # A package's directory is relative to the file, wherever the server starts.
        directory = (path.parent / config.server.directory).resolve()
        python = config.server.python
        if "/" in python and not Path(python).is_absolute():  # a path: from the file too
            python = str((path.parent / python).resolve())
        server = config.server.model_copy(update={"directory": str(directory), "python": python})
        return config.model_copy(update={"server": server})
    except UnicodeDecodeError as exc:
        raise ActionsFileError(str(path), [Problem(1, "(file)", "not UTF-8 text")]) from exc


def example(data: dict[str, Any]) -> ActionsFile:
    """An actions file from a dict (tests, embedding)."""
    return ActionsFile.model_validate(data)
