"""Business actions in the turn pipeline: match an intent, fill its slots, run the action.

A message is compared (embedding similarity) with each intent's examples. At or above the
intent's threshold it starts the intent; in the "confirm" band the bot asks "Did you mean
...?". The intent's slots are filled from the message (regex) or asked for, one question
per turn (a small form loop); an optional confirmation is asked; then the action runs on the
Rasa action server. Anything that matches no intent goes to retrieval and the model.

The conversation's action state — slots, the pending question, `paused`, and a
Rasa-compatible event log (what actions see as `tracker.events`) — is kept with the session
in Redis (`Session.meta["rasa"]`). An action's events are applied to a copy and written in
one step after the whole chain (followups included) succeeded: a failing action changes
nothing. Slot values are redacted (storage point) before they are kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bot.actions.client import ActionFailed, RasaActionClient
from bot.actions.managed import ManagedActionServer
from bot.actions.schema import ActionsFile, IntentConfig
from bot.sessions import Session, SessionStore
from knowledge.embeddings import Embedder
from policies.base import Context
from policies.engine import PolicyEngine

log = logging.getLogger(__name__)

MAX_EVENTS = 200  # the tracker's event log keeps this many, oldest dropped


@dataclass
class ActionReply:
    """What the action stage says this turn, and what it asks of the conversation."""

    text: str
    handoff: str = ""  # "pause": hand to a person; "resume": back to the bot
    action: str = ""  # the action that ran ("" for a question the form asked)
    failed: bool = False
    custom: list[dict[str, Any]] = field(default_factory=list)  # responses' JSON (redacted)


@dataclass
class _State:
    slots: dict[str, Any] = field(default_factory=dict)
    pending: dict[str, Any] | None = None
    paused: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, session: Session) -> _State:
        raw = session.meta.get("rasa")
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            data.get("slots", {}),
            data.get("pending"),
            data.get("paused", False),
            data.get("events", []),
        )

    def dump(self) -> str:
        events = self.events[-MAX_EVENTS:]
        return json.dumps(
            {"slots": self.slots, "pending": self.pending, "paused": self.paused, "events": events}
        )

    def log(self, event: dict[str, Any]) -> None:
        self.events.append({"timestamp": time.time(), **event})


class ActionEngine:
    """The action stage of one process."""

    def __init__(
        self,
        config: ActionsFile,
        embedder: Embedder,
        store: SessionStore,
        client: RasaActionClient | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.store = store
        domain = {
            "intents": [intent.name for intent in config.intents],
            "entities": sorted({s.name for i in config.intents for s in i.slots}),
            "slots": {
                s.name: {"type": "any", "mappings": []} for i in config.intents for s in i.slots
            },
            "responses": {},
            "actions": [intent.action for intent in config.intents],
            "forms": {},
        }
        server = config.server
        self.managed: ManagedActionServer | None = None
        if server.package is not None:  # rasa-sdk's server for the package, run here
            self.managed = ManagedActionServer(server.python, server.package, server.directory)
        url = self.managed.url if self.managed is not None else str(server.url)
        self.client = client or RasaActionClient(url, server.timeout_s, domain)
        self._examples: list[tuple[IntentConfig, np.ndarray]] = []
        self._yes = {w.lower() for w in config.yes}
        self._no = {w.lower() for w in config.no}

    def warm_up(self) -> None:
        for intent in self.config.intents:
            vectors = np.asarray(self.embedder.embed(intent.examples), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9
            self._examples.append((intent, vectors))

    async def discover(self) -> list[str]:
        """Ask the server which actions it has (`GET /actions`); warn about the missing ones.
        Never fails the start: a server that is down now may be up by the first action."""
        try:
            await self._ensure_server()
            available = await self.client.actions()
        except ActionFailed as exc:
            log.warning("actions: %s; actions will fail until the server is up", exc.reason)
            return []
        wanted = {intent.action for intent in self.config.intents}
        if missing := sorted(wanted - set(available)):
            log.warning(
                "actions: the server has no %s (it has: %s)",
                ", ".join(missing),
                ", ".join(available) or "none",
            )
        return available

    async def _ensure_server(self) -> None:
        """The managed server is up (restarted if it died); a failure is the action's."""
        if self.managed is not None:
            try:
                await self.managed.ensure()
            except RuntimeError as exc:
                raise ActionFailed(self.managed.package, str(exc)) from None

    async def close(self) -> None:
        if self.managed is not None:
            self.managed.stop()
        await self.client.close()

    def match(self, text: str) -> tuple[IntentConfig, float] | None:
        """The most similar intent and its score (cosine, best example)."""
        if not self._examples:
            return None
        query = np.asarray(self.embedder.embed([text]), dtype=np.float32)[0]
        query /= np.linalg.norm(query) + 1e-9
        scored = [(intent, float(np.max(vectors @ query))) for intent, vectors in self._examples]
        return max(scored, key=lambda pair: pair[1])

    def _intent(self, name: str) -> IntentConfig | None:
        return next((i for i in self.config.intents if i.name == name), None)

    def _answer(self, text: str) -> str:
        words = re.sub(r"[^\w' ]", " ", text.lower()).split()
        phrase = " ".join(words)
        if phrase in self._yes or (words and words[0] in self._yes):
            return "yes"
        if phrase in self._no or (words and words[0] in self._no):
            return "no"
        return ""

    async def handle(
        self,
        session: Session,
        text: str,
        channel: str,
        policies: PolicyEngine,
        answered: Callable[[str], Awaitable[bool]] | None = None,
    ) -> ActionReply | None:
        """This turn's reply from the action stage, or None: not an action (answer it).

        `answered`: whether the help center answers `text` well. An unclear match (the
        "Did you mean ...?" band) loses to it: "Do you offer express shipping?" is a
        question for the help center, not a guess at the order-status intent."""
        state = _State.load(session)
        pending = state.pending
        if pending is not None:
            intent = self._intent(pending.get("intent", ""))
            if intent is None:
                state.pending = None
            else:
                reply = await self._continue(
                    session, state, intent, pending, text, channel, policies
                )
                if reply is not None:
                    return reply
        # Embedding is CPU work: off the event loop, like retrieval.
        scored = await asyncio.to_thread(self.match, text)
        if scored is None:
            return None
        intent, score = scored
        if score >= intent.threshold:
            state.log(_user(text, intent.name, score, channel))
            return await self._start(session, state, intent, text, channel, policies)
        if intent.confirm_above is not None and score >= intent.confirm_above:
            if answered is not None and await answered(text):
                return None
            state.log(_user(text, intent.name, score, channel))
            state.pending = {"intent": intent.name, "stage": "suggest", "text": text}
            await self._save(session, state)
            what = intent.description or intent.name.replace("_", " ")
            return ActionReply(f"Did you mean that you want to {what}? (yes/no)")
        return None

    async def _continue(
        self,
        session: Session,
        state: _State,
        intent: IntentConfig,
        pending: dict[str, Any],
        text: str,
        channel: str,
        policies: PolicyEngine,
    ) -> ActionReply | None:
        stage, answer = pending.get("stage"), self._answer(text)
        state.log(_user(text, intent.name, 1.0, channel))
        if stage == "suggest":
            if answer == "yes":
                state.pending = None
                return await self._start(
                    session, state, intent, pending.get("text", ""), channel, policies
                )
            state.pending = None
            await self._save(session, state)
            return ActionReply("Okay — what can I help you with?") if answer == "no" else None
        if stage == "confirm":
            state.pending = None
            if answer == "yes":
                return await self._run(session, state, intent, text, channel, policies)
            await self._save(session, state)
            return ActionReply("Okay, I won't do that.") if answer == "no" else None
        if stage == "slot":
            slot = next((s for s in intent.slots if s.name == pending.get("slot")), None)
            if answer == "no" or slot is None:
                state.pending = None
                await self._save(session, state)
                return ActionReply("Okay, never mind.")
            value = _extract(slot.pattern, text, whole=True)
            if value is None:
                await self._save(session, state)
                return ActionReply(slot.prompt)
            state.slots[slot.name] = value
            state.log({"event": "slot", "name": slot.name, "value": value})
            state.pending = None
            return await self._next(session, state, intent, text, channel, policies)
        state.pending = None
        return None

    async def _start(
        self,
        session: Session,
        state: _State,
        intent: IntentConfig,
        text: str,
        channel: str,
        policies: PolicyEngine,
    ) -> ActionReply:
        for slot in intent.slots:  # what the message says fills the slots now
            value = _extract(slot.pattern, text, whole=False)
            if value is not None:
                state.slots[slot.name] = value
                state.log({"event": "slot", "name": slot.name, "value": value})
        return await self._next(session, state, intent, text, channel, policies)

    async def _next(
        self,
        session: Session,
        state: _State,
        intent: IntentConfig,
        text: str,
        channel: str,
        policies: PolicyEngine,
    ) -> ActionReply:
        """Ask for the first empty slot, or the confirmation, or run the action."""
        for slot in intent.slots:
            if state.slots.get(slot.name) in (None, ""):
                state.pending = {"intent": intent.name, "stage": "slot", "slot": slot.name}
                await self._save(session, state)
                return ActionReply(slot.prompt)
        if intent.confirm:
            state.pending = {"intent": intent.name, "stage": "confirm"}
            await self._save(session, state)
            values = {k: v for k, v in state.slots.items() if isinstance(k, str)}
            try:
                return ActionReply(intent.confirm.format(**values))
            except (KeyError, IndexError, ValueError):
                return ActionReply(intent.confirm)
        return await self._run(session, state, intent, text, channel, policies)

    async def _run(
        self,
        session: Session,
        state: _State,
        intent: IntentConfig,
        text: str,
        channel: str,
        policies: PolicyEngine,
    ) -> ActionReply:
        """Run the intent's action (and its followups); apply everything or nothing."""
        trial = _State(dict(state.slots), None, state.paused, list(state.events))
        texts: list[str] = []
        custom: list[dict[str, Any]] = []
        handoff = ""
        action, runs = intent.action, 0
        context = Context("storage", channel=channel, conversation=session.id)
        try:
            while action:
                runs += 1
                tracker = _tracker(session.id, trial, text, intent.name, channel)
                await self._ensure_server()
                result = await self.client.run(action, tracker)
                trial.log({"event": "action", "name": action})
                followup = ""
                for event in result["events"]:
                    kind = event.get("event") if isinstance(event, dict) else None
                    if kind == "slot":
                        value = event.get("value")
                        if isinstance(value, str):
                            value = await policies.redact_for_storage(value, context)
                        trial.slots[str(event.get("name"))] = value
                    elif kind == "reset_slots":
                        trial.slots = {}
                    elif kind == "restart":
                        trial = _State()
                    elif kind == "followup":
                        followup = str(event.get("name") or "")
                    elif kind == "pause":
                        trial.paused, handoff = True, "pause"
                    elif kind == "resume":
                        trial.paused, handoff = False, "resume"
                    elif kind == "bot" and event.get("text"):
                        texts.append(str(event["text"]))
                    if kind is not None:
                        trial.log({k: v for k, v in event.items() if k != "timestamp"})
                for response in result["responses"]:
                    if rendered := _render(response):
                        texts.append(rendered)
                        trial.log({"event": "bot", "text": rendered})
                    payload = response.get("custom") if isinstance(response, dict) else None
                    if isinstance(payload, dict) and payload:
                        custom.append(await _redact_json(payload, policies, context))
                if followup in ("", "action_listen"):
                    break
                if runs > self.config.max_followups:
                    raise ActionFailed(followup, "too many followup actions (a loop?)")
                action = followup
        except ActionFailed as exc:
            log.warning("conversation %s: action failed: %s", session.id, exc)
            state.log({"event": "action_execution_rejected", "name": exc.action})
            await self._save(session, state)
            return ActionReply(self.config.failure, action=intent.action, failed=True)
        await self._save(session, trial)
        text_out = "\n\n".join(texts) or "Done."
        return ActionReply(text_out, handoff, intent.action, custom=custom)

    async def _save(self, session: Session, state: _State) -> None:
        await self.store.set_meta(session.id, {"rasa": state.dump()})


def _user(text: str, intent: str, score: float, channel: str) -> dict[str, Any]:
    return {
        "event": "user",
        "text": text,
        "parse_data": {"intent": {"name": intent, "confidence": round(score, 4)}},
        "input_channel": channel,
    }


def _extract(pattern: str | None, text: str, *, whole: bool) -> str | None:
    """A slot's value from `text`: the pattern's first group (or match); without a pattern
    the whole answer, when it is the answer to the slot's question (`whole`)."""
    if pattern is None:
        value = text.strip()
        return value if whole and value else None
    match = re.search(pattern, text)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _tracker(sender: str, state: _State, text: str, intent: str, channel: str) -> dict[str, Any]:
    entities = [{"entity": k, "value": v} for k, v in state.slots.items() if v is not None]
    return {
        "sender_id": sender,
        "slots": state.slots,
        "latest_message": {
            "text": text,
            "intent": {"name": intent, "confidence": 1.0},
            "entities": entities,
        },
        "events": state.events[-MAX_EVENTS:],
        "paused": state.paused,
        "followup_action": None,
        "active_loop": {},
        "latest_action_name": "action_listen",
        "latest_input_channel": channel,
    }


async def _redact_json(value: Any, policies: PolicyEngine, context: Context) -> Any:
    """A custom payload with every string in it redacted (it is kept and sent on)."""
    if isinstance(value, str):
        return await policies.redact_for_storage(value, context)
    if isinstance(value, dict):
        return {k: await _redact_json(v, policies, context) for k, v in value.items()}
    if isinstance(value, list):
        return [await _redact_json(v, policies, context) for v in value]
    return value


def _render(response: dict[str, Any]) -> str:
    """A response as text: its text, and its buttons as a list of choices."""
    if not isinstance(response, dict):
        return ""
    parts = [str(response["text"])] if response.get("text") else []
    buttons = [b for b in response.get("buttons") or [] if isinstance(b, dict) and b.get("title")]
    if buttons:
        parts.append("\n".join(f"- {b['title']}" for b in buttons))
    return "\n".join(parts)
