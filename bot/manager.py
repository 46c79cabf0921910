"""`ConversationManager`: the one turn pipeline every channel goes through.

    session  -> input policy -> retrieval -> prompt -> model stream -> output filter -> store

`respond()` is an async generator of `ReplyEvent`s; callers must close it (use
`contextlib.aclosing`) so that a client that goes away stops the model and frees the
conversation's lock. A failing stage degrades the turn: no passages when retrieval fails,
the policy's fallback reply when the model fails. The store failing is the one fault that
ends the turn with an error (`StoreUnavailable`), because then nothing could be kept.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass

from bot.errors import BadRequest, ConversationNotFound, ModelError
from bot.llm.base import ChatMessage, GenerationParams, LanguageModel
from bot.prompt import build_prompt
from bot.sessions import Session, SessionStore
from bot.settings import Settings
from bot.types import (
    Citation,
    InboundMessage,
    Message,
    Notice,
    Passage,
    ReplyEvent,
    Token,
    Turn,
)
from knowledge.retriever import Retriever
from policies.engine import PolicyEngine
from policies.verdicts import Block

log = logging.getLogger(__name__)
audit = logging.getLogger("switchboard.audit")


@dataclass(slots=True)
class _TurnAudit:
    """What happened in a turn, logged without any message text."""

    conversation_id: str
    pii_in: tuple[str, ...] = ()
    passages: int = 0
    confidence: float | None = None  # that the knowledge base answers (calibrated)
    abstained: bool = False
    retrieval_error: str = ""
    model_error: str = ""
    first_token_s: float | None = None
    total_s: float = 0.0


class ConversationManager:
    """Runs turns: wires the session store, policies, retriever and model together."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        policies: PolicyEngine,
        retriever: Retriever,
        llm: LanguageModel,
    ) -> None:
        self._settings = settings
        self.store = store
        self.policies = policies
        self.retriever = retriever
        self.llm = llm

    async def resume(self, conversation_id: str) -> tuple[Session, list[Turn]]:
        """A conversation and its stored (redacted) turns; raises `ConversationNotFound`."""
        session = await self.store.get(conversation_id)
        if session is None:
            raise ConversationNotFound(f"conversation {conversation_id!r} does not exist")
        return session, await self.store.history(conversation_id)

    def validate(self, text: str) -> str:
        """The message text, stripped; raises `BadRequest` when empty or over-long."""
        text = text.strip()
        if not text:
            raise BadRequest("the message is empty", code="empty_message")
        limit = self._settings.max_message_chars
        if len(text) > limit:
            raise BadRequest(
                f"the message is {len(text)} characters long; the limit is {limit}",
                code="message_too_long",
            )
        return text

    async def _session_for(self, message: InboundMessage) -> Session:
        if message.conversation_id:
            session, _ = await self.resume(message.conversation_id)
            return session
        return await self.store.create(message.channel, message.user)

    async def respond(self, message: InboundMessage) -> AsyncGenerator[ReplyEvent, None]:
        """Answer one message, streaming `Token`s and ending with one `Message`."""
        text = self.validate(message.text)
        started = time.perf_counter()
        session = await self._session_for(message)
        record = _TurnAudit(session.id)
        async with self.store.lock(session.id):
            verdict = await self.policies.check_input(text)
            if isinstance(verdict, Block):
                user_turn = Turn("user", await self.policies.redact_for_storage(text))
                reply = Turn("assistant", verdict.reply)
                await self.store.append(session.id, [user_turn, reply])
                yield self._final(session, reply, message)
                return
            question, record.pii_in = verdict.text, verdict.entities
            history = await self.store.history(session.id, self._settings.sessions.history_turns)
            # The question is stored before the model runs: it survives a model failure.
            await self.store.append(session.id, [Turn("user", question)])
            passages = await self._retrieve(question, record)
            if record.abstained:
                # Nothing in the help center answers this: say so rather than let the model
                # guess. The model is not asked at all.
                reply = Turn("assistant", self.policies.no_answer_reply)
                yield Token(reply.text)
                await self.store.append(session.id, [reply])
                record.total_s = time.perf_counter() - started
                audit.info("turn %s", json.dumps(asdict(record)))
                yield self._final(session, reply, message)
                return
            prompt = build_prompt(
                company=self._settings.company_name,
                question=question,
                passages=passages,
                history=history,
                budget=self._settings.llm.prompt_token_budget,
                count_tokens=self.llm.count_tokens,
            )
            parts: list[str] = []
            async for event in self._generate(prompt.messages, record, started):
                if isinstance(event, Token):
                    parts.append(event.text)
                yield event
            answer = Turn("assistant", "".join(parts).strip(), citations=_cite(prompt.passages))
            await self.store.append(session.id, [answer])
            record.total_s = time.perf_counter() - started
            audit.info("turn %s", json.dumps(asdict(record)))
            yield self._final(session, answer, message)

    async def _retrieve(self, question: str, record: _TurnAudit) -> list[Passage]:
        try:
            passages, confidence = await self.retriever.search_with_confidence(
                question, self._settings.knowledge.top_k
            )
            threshold = self.retriever.threshold
            record.confidence = confidence
            if (
                self._settings.knowledge.abstain
                and confidence is not None
                and threshold is not None
            ):
                record.abstained = confidence < threshold
            # Passages pass the policies too; if that fails they are dropped, never used raw.
            passages = await self.policies.screen_passages(passages)
        except Exception as exc:  # degrade: answer without passages, and say so in the audit
            log.exception("retrieval failed; answering without passages")
            record.retrieval_error = type(exc).__name__
            return []
        record.passages = len(passages)
        return passages

    async def _generate(
        self, messages: list[ChatMessage], record: _TurnAudit, started: float
    ) -> AsyncGenerator[ReplyEvent, None]:
        llm = self._settings.llm
        params = GenerationParams(llm.max_new_tokens, llm.temperature, llm.timeout_s)
        output = self.policies.output_filter()

        def release(text: str) -> Token:
            if record.first_token_s is None:  # the customer sees the first words now
                record.first_token_s = time.perf_counter() - started
            return Token(text)

        try:
            async for piece in self.llm.stream(messages, params):
                if safe := await self.policies.feed(output, piece):
                    yield release(safe)
            if tail := await self.policies.flush(output):
                yield release(tail)
        except ModelError as exc:
            log.warning("model failed (%s); sending the fallback reply", exc.message)
            record.model_error = exc.code
            if tail := await self.policies.flush(output):
                yield release(tail)
            said = record.first_token_s is not None
            yield Notice("model_unavailable", "The assistant could not finish this answer.")
            yield release(("\n\n" if said else "") + self.policies.fallback_reply)

    @staticmethod
    def _final(session: Session, turn: Turn, message: InboundMessage) -> Message:
        return Message(
            id=turn.message_id,
            text=turn.text,
            conversation_id=session.id,
            citations=turn.citations,
            in_reply_to=message.client_message_id,
        )


def _cite(passages: list[Passage]) -> tuple[Citation, ...]:
    """The articles the answer was grounded in, best first, each once."""
    seen: dict[str, Citation] = {}
    for passage in passages:
        seen.setdefault(passage.citation.source, passage.citation)
    return tuple(seen.values())
