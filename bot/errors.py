"""The one hierarchy of faults in Switchboard.

Policies return verdicts and never raise; exceptions are for faults only::

    SwitchboardError                    (500, close 1011)
    ├── ConfigError                     bad settings or policy file: refused at start
    ├── BadRequest                      (400, error frame) the client sent something unusable
    │   └── ConversationNotFound        (404) an unknown or expired conversation id
    ├── Forbidden                       (403) a conversation's token is missing or wrong
    ├── Unavailable                     (503) a dependency is down; retry later
    │   ├── StoreUnavailable            Redis (or the configured store) is unreachable
    │   └── Busy                        the engine's queue is full
    ├── ModelError                      the language model failed mid-turn
    ├── LeaseLost                       (409) another process took this turn over
    └── (bot.admin) Unauthorized (401), AdminDisabled (404), DocumentNotFound (404),
        UnsupportedDocument (415), DocumentTooLarge (413), UnreadableUpload (422),
        EmptyKnowledgeBase (409)

Each carries a stable machine-readable `code`; connectors map them at the edge with
`http_status` and send `code` plus the message in their error frames.
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base of every fault Switchboard raises on purpose."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # More for the caller, sent beside code and message (e.g. which conversation).
        self.extra: dict[str, str] = {}


class ConfigError(SwitchboardError):
    """Settings or a configuration file are invalid; the message says where and why."""

    code = "config_error"


class BadRequest(SwitchboardError):
    """The client sent something we cannot use (empty text, too long, bad frame...)."""

    code = "bad_request"
    http_status = 400


class ConversationNotFound(BadRequest):
    """The conversation id does not exist (never created, or expired)."""

    code = "unknown_conversation"
    http_status = 404


class Forbidden(SwitchboardError):
    """The caller may not touch this conversation: its token is missing or wrong."""

    code = "forbidden"
    http_status = 403


class Unavailable(SwitchboardError):
    """A dependency is down; the request may succeed if retried later."""

    code = "unavailable"
    http_status = 503


class StoreUnavailable(Unavailable):
    """The session store (Redis) cannot be reached."""

    code = "store_unavailable"


class Busy(Unavailable):
    """Too many requests are waiting for the model."""

    code = "busy"


class LeaseLost(SwitchboardError):
    """This process lost its turn's lock (it was paused or starved past the lease) and
    another process took the turn over: nothing more of this turn may be said or stored."""

    code = "turn_taken_over"
    http_status = 409


class ModelError(SwitchboardError):
    """The language model failed while generating."""

    code = "model_error"
