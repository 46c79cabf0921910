"""`ConversationManager`: the one turn pipeline every channel goes through.

    session  -> input policy -> retrieval -> prompt -> model stream -> output filter -> store

`respond()` is an async generator of `ReplyEvent`s; callers must close it (use
`contextlib.aclosing`) so that a client that goes away stops the model and frees the
conversation's lock. A failing stage degrades the turn: no passages when retrieval fails,
the policy's fallback reply when the model fails. The store failing is the one fault that
ends the turn with an error (`StoreUnavailable`), because then nothing could be kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, replace

from bot.actions.engine import ActionEngine, ActionReply
from bot.admission import Admission, default_active, default_waiting
from bot.errors import BadRequest, Busy, ConversationNotFound, ModelError, SwitchboardError
from bot.handoff import WITH_AGENT, HandoffDesk
from bot.language import LanguageDetector, only_in
from bot.llm.base import ChatMessage, GenerationParams, LanguageModel
from bot.observability import (
    RETRIEVAL_SECONDS,
    TTFT_SECONDS,
    TURN_SECONDS,
    TURNS,
    TurnTrace,
    conversation_id,
    current_trace,
    stage,
)
from bot.prompt import Prompt, build_prompt
from bot.prompt_file import Prompts, load_prompt
from bot.quotes import (
    ArticleSearch,
    QuoteAnswerer,
    citations_of,
    cite_answer,
    compose,
    is_echo,
    strip_markup,
)
from bot.sessions import Lease, Session, SessionStore
from bot.settings import Settings
from bot.types import (
    Accepted,
    InboundMessage,
    Message,
    Notice,
    Passage,
    ReplyEvent,
    Token,
    Turn,
    is_text,
)
from knowledge.embeddings import Embedder
from knowledge.retriever import Retriever
from policies.base import Context
from policies.engine import PolicyEngine
from policies.grounding import (
    ACTION_OF,
    GroundingChecker,
    GroundingRules,
    SentenceCheck,
    StreamingGrounding,
    findings,
)
from policies.output import OutputFilter
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
    blocked: str = ""  # the policy's reason when the message or the answer was blocked
    model_error: str = ""
    first_token_s: float | None = None
    total_s: float = 0.0
    resumed: bool = False  # another process's unfinished answer, finished here
    rewritten: str = ""  # a follow-up made stand-alone for retrieval: "llm" or "concat"
    unsupported: int = 0  # sentences the grounding check found unsupported by the passages
    quote_score: float | None = None  # quoted answers: the best sentence's score
    language: str = ""  # the customer's, when not the help center's


REWRITE_INSTRUCTION = (
    "Rewrite the customer's last message as one stand-alone question that names what it "
    "refers to from the conversation, so it can be searched on its own. Reply with the "
    "question only."
)
SUMMARY_INSTRUCTION = (
    "Summarize this customer-service conversation in at most three short sentences: what "
    "the customer wants, the facts and answers given, and what is still open. Reply with the "
    "summary only."
)
_FOLLOWUP_STARTS = ("and ", "and?", "what about", "how about", "also", "same for", "or ")
_REFERRING = frozenset(
    ["it", "its", "that", "this", "those", "these", "they", "them", "there", "one", "ones"]
)


def looks_like_followup(question: str) -> bool:
    """Whether a message leans on the conversation: short, starting like "and for...",
    or pointing back ("does it...")."""
    text = question.strip().lower()
    words = [w.strip(".,!?;:'\"") for w in text.split()]
    if text.startswith(_FOLLOWUP_STARTS) or len(words) <= 4:
        return True
    return len(words) <= 12 and any(w in _REFERRING for w in words)


_INTERROGATIVE = re.compile(
    r"^(?:how|what|when|where|which|who|whom|whose|why|can|could|do|does|did|is|are|was|were|"
    r"will|would|should|shall|may|might|have|has|am)\b",
    re.IGNORECASE,
)


def is_rewrite(text: str, conversation: str) -> bool:
    """Whether the model's rewrite of a follow-up is a usable search query: one question,
    not an answer. A small model often answers instead ("Express shipping costs $10.95."),
    and that answer, searched, finds the wrong article or is echoed back as fact."""
    text = text.strip()
    if not text or len(text) > 300:
        return False
    if not (text.endswith("?") or _INTERROGATIVE.match(text)):
        return False
    known = set(re.findall(r"\d+(?:[.,]\d+)?", conversation))
    return all(number in known for number in re.findall(r"\d+(?:[.,]\d+)?", text))


def context_query(question: str, asked_before: Sequence[str]) -> str:
    """`question` with what it refers to in front: the conversation's last stand-alone
    message (the subject: "how much is standard shipping?") and the message just before
    this one when that was itself a follow-up ("and for express?"). Chained follow-ups keep
    their subject: "what about to canada?" is not searched as "and for express? what about
    to canada?"."""
    chain: list[str] = []
    for text in reversed(asked_before[-4:]):
        chain.insert(0, text)
        if not looks_like_followup(text):
            break
    if not chain:
        return question
    kept = list(dict.fromkeys([chain[0], chain[-1]]))
    return " ".join([*kept, question])


def _topic(question: str, history: list[Turn], always: bool = False) -> tuple[str, ...]:
    """For a follow-up (`always`: for any message), the sources of the articles the last
    answer cited (what "it" is)."""
    if not history or not (always or looks_like_followup(question)):
        return ()
    for turn in reversed(history):
        if turn.role == "assistant":
            return tuple(c.source for c in turn.citations)
    return ()


def session_meta_after(session: Session, older: list[Turn]) -> list[Turn]:
    """The turns of `older` after the last one the running summary covers."""
    upto = session.meta.get("summary_upto", "")
    ids = [t.message_id for t in older]
    return older[ids.index(upto) + 1 :] if upto in ids else older


async def _for_storage(policies: PolicyEngine, turn: Turn, context: Context) -> Turn:
    """An answer as stored: its text (already through the output stage's PII redaction)
    through the storage stages after `pii` (`scrub`). The customer is shown `turn` itself."""
    if turn.kind not in ("", "fallback", "action"):
        return turn  # the policy's and the bot's own fixed replies
    return replace(turn, text=await policies.scrub_for_storage(turn.text, context))


@dataclass(frozen=True, slots=True)
class _Asked:
    """The stored user message a turn answers, and where the answer goes."""

    channel: str
    in_reply_to: str | None
    turn: Turn
    handoff: str  # the input policy asked for a person ("" when it did not)
    # The question as the input policy passed it; the stored turn may be scrubbed further.
    question: str = ""
    # The turn's hold on the conversation: its writes are refused once another process has
    # taken the turn over.
    lease: Lease | None = None
    # The message as the customer wrote it, only to tell its language (never stored): the
    # PII stage's English name model turns French words into <PERSON>.
    written: str = ""


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
        # Hands conversations to people (set by the app when channels are wired).
        self.desk: HandoffDesk | None = None
        # The prompt file (the bundled default until components load the configured one).
        self.prompts: Prompts = load_prompt(None, settings.company_name)
        # For the grounding check (set by the components; None: answers are not checked).
        self.embedder: Embedder | None = None
        # Business actions on a Rasa action server (set when an actions file is configured).
        self.actions: ActionEngine | None = None
        # Quote-first answers (made on first use from the embedder; see `answers.mode`).
        self.quotes: QuoteAnswerer | None = None
        # The customer's language (bot.language); None: not told apart.
        self.language: LanguageDetector | None = (
            LanguageDetector(settings.answers.help_center_language)
            if settings.answers.detect_language
            else None
        )
        # The fair, bounded line every turn passes before anything of it is stored.
        gate = settings.admission
        self.admission = Admission(
            gate.active or default_active(settings),
            default_waiting(settings) if gate.waiting is None else gate.waiting,
            gate.per_client,
            gate.wait_s,
        )

    def no_answer_text(self, channel: str | None) -> str:
        """The "I don't know" reply: the prompt file's wording, else the policy's."""
        return self.prompts.config.wording.no_answer or self.policies.messages(channel).no_answer

    def unsure_text(self, channel: str | None) -> str:
        """Said after a quote that may not answer the question: the prompt file's wording."""
        return self.prompts.config.wording.unsure

    def handoff_text(self, channel: str | None) -> str:
        """What the customer is told when a person is asked for."""
        return self.prompts.config.wording.handoff or self.policies.messages(channel).handoff

    async def resume(self, conversation_id: str) -> tuple[Session, list[Turn]]:
        """A conversation and its stored (redacted) turns; raises `ConversationNotFound`."""
        return await self.session(conversation_id), await self.store.history(conversation_id)

    async def session(self, conversation_id: str) -> Session:
        """A conversation's metadata; raises `ConversationNotFound`."""
        session = await self.store.get(conversation_id)
        if session is None:
            raise ConversationNotFound(f"conversation {conversation_id!r} does not exist")
        return session

    async def find_sent(
        self, conversation_id: str, client_id: str
    ) -> tuple[Turn, Turn | None] | None:
        """The stored message the client sent as `client_id`, and its answer when stored."""
        return _sent(await self.store.history(conversation_id), client_id)

    def validate(self, text: str) -> str:
        """The message text, stripped; raises `BadRequest` when empty or over-long."""
        text = text.strip()
        if not text:
            raise BadRequest("the message is empty", code="empty_message")
        if not is_text(text):
            raise BadRequest(
                "the message holds a lone surrogate (\\ud800-\\udfff), which is not text",
                code="bad_text",
            )
        limit = self._settings.max_message_chars
        if len(text) > limit:
            raise BadRequest(
                f"the message is {len(text)} characters long; the limit is {limit}",
                code="message_too_long",
            )
        return text

    async def _session_for(self, message: InboundMessage) -> Session:
        if message.conversation_id:
            return await self.session(message.conversation_id)
        return await self.store.create(message.channel, message.user)

    async def respond(self, message: InboundMessage) -> AsyncGenerator[ReplyEvent, None]:
        """Answer one message, streaming `Token`s and ending with one `Message`.

        Counted and timed by channel and outcome (metrics), traced stage by stage."""
        started = time.perf_counter()
        trace = TurnTrace(message.channel)
        current_trace.set(trace)
        outcome, first = "error", None
        try:
            async with (
                self.admission.admit(_client_of(message)),
                aclosing(self._respond(message)) as events,
            ):
                async for event in events:
                    if isinstance(event, Accepted):
                        conversation_id.set(event.conversation_id)
                        trace.span.set_attribute("switchboard.conversation", event.conversation_id)
                        outcome = "to_agent" if event.to_agent else outcome
                    elif isinstance(event, Token) and first is None:
                        first = time.perf_counter() - started
                    elif isinstance(event, Message):
                        outcome = event.kind or "answered"
                    yield event
        except Busy:
            outcome = "busy"
            raise
        except BadRequest:
            outcome = "rejected"
            raise
        except (GeneratorExit, asyncio.CancelledError):
            outcome = "cancelled"  # the customer went away
            raise
        finally:
            TURNS.labels(message.channel, outcome).inc()
            TURN_SECONDS.labels(message.channel).observe(time.perf_counter() - started)
            if first is not None:
                TTFT_SECONDS.labels(message.channel).observe(first)
            trace.end(outcome)

    async def _respond(self, message: InboundMessage) -> AsyncGenerator[ReplyEvent, None]:
        text = self.validate(message.text)
        started = time.perf_counter()
        session = await self._session_for(message)
        record = _TurnAudit(session.id)
        policies = self.policies  # one engine for the whole turn, even if policies reload
        context = Context(
            "input",
            channel=message.channel,
            conversation=session.id,
            user=message.user or "",
            ip=message.ip or "",
        )
        async with self.store.lock(session.id) as lease:
            turn = self._locked_turn(
                message, text, session, lease, policies, context, record, started
            )
            async for event in self._fenced(lease, turn):
                yield event

    async def _fenced(
        self, lease: Lease, events: AsyncGenerator[ReplyEvent, None]
    ) -> AsyncGenerator[ReplyEvent, None]:
        """`events`, each only while the turn still holds its conversation: a process paused
        past its lease (and taken over by another) says nothing more (`LeaseLost`)."""
        async with aclosing(events):
            async for event in events:
                if lease.doubtful():
                    await self.store.confirm(lease)
                yield event

    async def _locked_turn(
        self,
        message: InboundMessage,
        text: str,
        session: Session,
        lease: Lease,
        policies: PolicyEngine,
        context: Context,
        record: _TurnAudit,
        started: float,
    ) -> AsyncGenerator[ReplyEvent, None]:
        # Read again under the lock: a person may have taken over meanwhile.
        session = await self.session(session.id)
        turns = await self.store.history(session.id)
        sent = _sent(turns, message.client_message_id)
        if session.status in WITH_AGENT and self.desk is not None:
            # A person handles this conversation: the bot stays silent, the message
            # goes to them.
            if sent is None:
                stored = await policies.redact_for_storage(text, context)
                user_turn = Turn("user", stored, client_id=message.client_message_id or "")
                await self.store.append(session.id, [user_turn], lease)
            else:  # a resend: relayed once, whether or not the first try got that far
                user_turn = sent[0]
            await self.desk.customer_says(session, user_turn)
            yield Accepted(
                user_turn.message_id,
                user_turn.text,
                session.id,
                message.client_message_id,
                to_agent=True,
            )
            return
        if session.status == "closed":  # the customer writes again: the bot answers
            await self.store.set_status(session.id, "bot", ("closed",))
        if sent is not None and sent[1] is not None:
            # A resend (a retry, a reconnect): the stored answer, not a second one.
            yield self._final(session, sent[1], message.client_message_id)
            return
        keep = self._settings.sessions.history_turns
        if sent is not None and turns and turns[-1].message_id == sent[0].message_id:
            # Stored but never answered (its process died mid-turn, and the channel
            # runs the message again): answer the stored question, once.
            user_turn = sent[0]
            yield Accepted(
                user_turn.message_id, user_turn.text, session.id, message.client_message_id
            )
            asked = _Asked(message.channel, message.client_message_id, user_turn, "", lease=lease)
            history = turns[:-1][-keep:] if keep else []
            answer = self._answer(policies, session, asked, history, record, context, started)
            async for event in answer:
                yield event
            return
        history = turns[-keep:] if keep else []
        with stage("policy.input"):
            verdict = await policies.check_input(text, context)
        if isinstance(verdict, Block):
            record.blocked = verdict.reason
            user_turn = Turn(
                "user",
                await policies.redact_for_storage(text, context),
                client_id=message.client_message_id or "",
            )
            reply = Turn("assistant", verdict.reply, kind="blocked")
            await self.store.append(session.id, [user_turn, reply], lease)
            yield Accepted(
                user_turn.message_id, user_turn.text, session.id, message.client_message_id
            )
            handoff = self._handoff(
                policies, message.channel, session.id, [*history, user_turn, reply], verdict.handoff
            )
            yield Token(reply.text)
            self._log(record, started)
            await self._hand_off(session.id, handoff)
            yield self._final(session, reply, message.client_message_id, handoff)
            return
        question, record.pii_in = verdict.text, verdict.entities
        # The question is stored before the model runs: it survives a model failure.
        user_turn = Turn(
            "user",
            await policies.scrub_for_storage(question, context),
            client_id=message.client_message_id or "",
        )
        await self.store.append(session.id, [user_turn], lease)
        yield Accepted(user_turn.message_id, user_turn.text, session.id, message.client_message_id)
        asked = _Asked(
            message.channel,
            message.client_message_id,
            user_turn,
            verdict.handoff,
            question,
            written=text,
        )
        if self.actions is not None:
            with stage("action"):
                act = await self._act(session, question, message.channel, policies)
            if act is not None:
                done = self._action_answer(policies, session, asked, act, record, context)
                async for event in done:
                    yield event
                self._log(record, started)
                return
        answer = self._answer(policies, session, asked, history, record, context, started)
        async for event in answer:
            yield event

    async def continue_turn(
        self,
        conversation_id: str,
        question_id: str,
        said: str,
        channel: str,
        in_reply_to: str | None = None,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Finish a turn whose process died mid-answer, going on from what was `said`.

        `question_id` is the stored user message the turn answers and `said` the part of the
        answer already released to the client. Nothing happens when that message is no
        longer waiting for an answer (another process finished it). Raises `Busy` while the
        turn's lock is still held.
        """
        started = time.perf_counter()
        session = await self.session(conversation_id)
        async with self.store.lock(session.id) as lease:
            keep = self._settings.sessions.history_turns
            turns = await self.store.history(session.id, keep + 2)
            if (
                len(turns) >= 2
                and turns[-2].message_id == question_id
                and turns[-1].role == "assistant"
            ):
                # Stored, but its process died before the final event went out: send it.
                yield self._final(session, turns[-1], in_reply_to)
                return
            if not turns or turns[-1].role != "user" or turns[-1].message_id != question_id:
                return
            log.info("conversation %s: finishing an interrupted answer", session.id)
            context = Context(
                "input", channel=channel, conversation=session.id, user=session.user or ""
            )
            record = _TurnAudit(session.id, resumed=True)
            history = turns[:-1][-keep:] if keep else []
            asked = _Asked(channel, in_reply_to, turns[-1], "", lease=lease)
            answer = self._answer(
                self.policies, session, asked, history, record, context, started, said
            )
            async for event in self._fenced(lease, answer):
                yield event

    async def _answer(
        self,
        policies: PolicyEngine,
        session: Session,
        asked: _Asked,
        history: list[Turn],
        record: _TurnAudit,
        context: Context,
        started: float,
        said: str = "",
    ) -> AsyncGenerator[ReplyEvent, None]:
        """Retrieve, prompt, stream and store the answer to `asked.turn` (under its lock).

        `said`: the beginning of the answer, already shown; the model goes on from there and
        only what follows it is streamed.
        """
        question, user_turn = asked.question or asked.turn.text, asked.turn
        if (other := self._other_language(asked.written or question)) is not None:
            # Not the help center's language: said honestly, in the customer's, with the
            # offer of a person (kind no_answer: two in a row hand the conversation over).
            record.language, text = other
            reply = Turn("assistant", text, kind="no_answer")
            fixed = self._no_answer(policies, session, asked, history, reply, said, record, started)
            async for event in fixed:
                yield event
            return
        quoting = self._quoting()
        search = self.retriever if isinstance(self.retriever, ArticleSearch) else None
        if search is not None:  # "forgot my pasword": the help center's own spelling
            question = search.fix_spelling(question)
        query = await self._standalone(question, history, record, quoting)
        topic = _topic(question, history, always=quoting)
        alone = question if quoting and query != question else ""
        passages = await self._retrieve(query, record, context, quoting, topic, alone)
        choice = None
        if quoting and not record.abstained and not record.retrieval_error:
            assert self.quotes is not None
            with stage("quotes"):
                choice = await asyncio.to_thread(
                    self.quotes.answer,
                    question,
                    passages,
                    query=query,
                    topic=topic,
                    leans=looks_like_followup(question),
                )
            record.abstained = not choice.units
            record.quote_score = round(choice.best, 4)
        if record.abstained:
            # Nothing in the help center answers this: say so rather than let the model
            # guess. The model is not asked at all.
            reply = Turn("assistant", self.no_answer_text(asked.channel), kind="no_answer")
            fixed = self._no_answer(policies, session, asked, history, reply, said, record, started)
            async for event in fixed:
                yield event
            return
        parts: list[str] = [said]
        outputs: list[OutputFilter] = []
        known = "\n".join(strip_markup(p.text) for p in passages)
        if choice is not None:
            # The answer is the help center's own sentences: nothing for the model to do (and
            # nothing the bot claims to have done: the claims stage leaves them alone).
            outputs.append(policies.output_filter(replace(context, quoted=True), known=known))
            quoted = compose(choice.units)
            if choice.best < self._settings.answers.sure_score:
                # A near miss: quoted, with an honest doubt and the offer of a person.
                quoted += "\n\n" + self.unsure_text(asked.channel)
            events = self._release(policies, outputs[0], quoted.removeprefix(said.strip()))
        else:
            events = self._written(
                policies, outputs, session, asked, question, passages, history, record, context,
                started, said, known,
            )  # fmt: skip
        async for event in events:
            if isinstance(event, Token):
                parts.append(event.text)
            yield event
        blocked = next((o.blocked for o in outputs if o.blocked is not None), None)
        text = "".join(parts).strip()
        if blocked is not None:
            # The answer broke an output rule mid-stream: what was shown is withdrawn and
            # the policy's reply is the whole answer.
            record.blocked = blocked.reason
            answer = Turn(
                "assistant",
                blocked.reply or policies.messages(asked.channel).blocked,
                kind="blocked",
            )
            yield Notice("answer_withdrawn", "The answer was withdrawn by a policy.")
        elif not text and record.unsupported:
            # Nothing the model said was supported by the articles: "I don't know".
            answer = Turn("assistant", self.no_answer_text(asked.channel), kind="no_answer")
            yield Token(answer.text)
        else:
            answer = Turn(
                "assistant",
                text,
                # Only the articles the answer comes from: the quoted ones, or the ones the
                # written answer's sentences are found in.
                citations=(citations_of(choice.units) if choice else cite_answer(text, passages)),
                kind="fallback" if record.model_error else "",
            )
        await self.store.append(
            session.id, [await _for_storage(policies, answer, context)], asked.lease
        )
        turns = [*history, user_turn, answer]
        handoff = self._handoff(policies, asked.channel, session.id, turns, asked.handoff)
        self._log(record, started)
        await self._hand_off(session.id, handoff)
        yield self._final(session, answer, asked.in_reply_to, handoff)
        # The customer has the answer; the memory of a long conversation is kept up to date
        # before the next message of this conversation is taken (it waits on the lock).
        await self._remember(session, policies, context)

    async def _no_answer(
        self,
        policies: PolicyEngine,
        session: Session,
        asked: _Asked,
        history: list[Turn],
        reply: Turn,
        said: str,
        record: _TurnAudit,
        started: float,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """A fixed reply instead of an answer: shown, stored, counted for the handoff rules."""
        yield Token(reply.text.removeprefix(said))
        await self.store.append(session.id, [reply], asked.lease)
        turns = [*history, asked.turn, reply]
        handoff = self._handoff(policies, asked.channel, session.id, turns, asked.handoff)
        self._log(record, started)
        await self._hand_off(session.id, handoff)
        yield self._final(session, reply, asked.in_reply_to, handoff)

    def _other_language(self, question: str) -> tuple[str, str] | None:
        """(language, reply) for a question in another language than the help center's."""
        if self.language is None:
            return None
        try:
            language, _ = self.language.detect(question)
        except Exception:  # a broken detector costs the detection, never the turn
            log.exception("language detection failed; the message is taken as written")
            return None
        helps_in = self._settings.answers.help_center_language
        return None if language == helps_in else (language, only_in(helps_in, language))

    def _quoting(self) -> bool:
        """Whether answers are quoted from the help center (`answers.mode`): needs the
        embedding model (a test build without one writes answers instead)."""
        if self._settings.answers.mode != "quote" or self.embedder is None:
            return False
        if self.quotes is None:
            answers = self._settings.answers
            self.quotes = QuoteAnswerer(
                self.embedder, min_score=answers.min_score, max_chars=answers.max_chars
            )
        return True

    async def _help_center_answers(self, question: str) -> bool:
        """Whether the help center answers `question` with confidence: a quote at
        `answers.sure_score`, or (writing answers) the retrieval gate passed."""
        record = _TurnAudit("")
        quoting = self._quoting()
        passages = await self._retrieve(question, record, Context("retrieval"), quoting)
        if record.retrieval_error or not passages:
            return False
        if not quoting or self.quotes is None:
            threshold = self.retriever.threshold
            return (
                record.confidence is not None
                and threshold is not None
                and (record.confidence >= threshold)
            )
        choice = await asyncio.to_thread(self.quotes.answer, question, passages)
        return choice.best >= self._settings.answers.sure_score

    async def _release(
        self, policies: PolicyEngine, output: OutputFilter, text: str
    ) -> AsyncGenerator[ReplyEvent, None]:
        """A finished answer through the output policy, as the customer may see it."""
        for piece in (await policies.feed(output, text), await policies.flush(output)):
            if piece:
                yield Token(piece)

    def _written(
        self,
        policies: PolicyEngine,
        outputs: list[OutputFilter],
        session: Session,
        asked: _Asked,
        question: str,
        passages: list[Passage],
        history: list[Turn],
        record: _TurnAudit,
        context: Context,
        started: float,
        said: str,
        known: str,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """The model's answer from the passages (`answers.mode: generate`), checked by the
        grounding policy when it is on. `known`: the passages' text, never redacted."""
        prompt = build_prompt(
            prompts=self.prompts,
            channel=asked.channel,
            summary=session.meta.get("summary", "") if self._settings.sessions.summarize else "",
            question=question,
            passages=passages,
            history=history,
            budget=self._settings.llm.prompt_token_budget,
            count_tokens=self.llm.count_tokens,
        )
        messages = prompt.messages
        if said:  # the model continues its own unfinished answer
            messages = [*messages, ChatMessage("assistant", said)]
        rules = policies.pipeline(asked.channel).policy.grounding
        # Without a working knowledge base there is nothing to check against: the turn is
        # already degraded (no passages), and every claim would look unsupported.
        checkable = not record.retrieval_error and self.embedder is not None
        if rules.enabled and checkable and not said:
            return self._grounded(
                policies, outputs, prompt, rules, record, started, context, question, known
            )
        outputs.append(policies.output_filter(context, known=known))
        return self._generate(policies, outputs[0], messages, record, started)

    async def _grounded(
        self,
        policies: PolicyEngine,
        outputs: list[OutputFilter],
        prompt: Prompt,
        rules: GroundingRules,
        record: _TurnAudit,
        started: float,
        context: Context,
        question: str,
        known: str,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """The answer, released sentence by sentence once the grounding check has found it
        supported by the passages (a sentence that only repeats the `question` is not). An
        unsupported sentence is handled as the policy says: `drop` it; `refer` (stop, and
        point to the articles with an offer of a person); or `regenerate`: stop, and let the
        model go on once from what was shown with a stricter instruction, dropping whatever
        is still unsupported."""
        assert self.embedder is not None
        checker = GroundingChecker.from_rules(rules, self.embedder)
        texts = [p.text for p in prompt.passages]
        shown: list[str] = []
        judged: list[SentenceCheck] = []
        messages, retried = prompt.messages, False

        def judge(checks: list[SentenceCheck]) -> list[SentenceCheck]:
            return [
                replace(c, supported=False, reason="echo")
                if c.supported and is_echo(c.text, question)
                else c
                for c in checks
            ]

        while True:
            output = policies.output_filter(context, known=known)
            outputs.append(output)
            stream = StreamingGrounding(checker, texts)
            stop: SentenceCheck | None = None
            with stage("grounding"):
                async with aclosing(
                    self._generate(policies, output, messages, record, started)
                ) as events:
                    async for event in events:
                        if isinstance(event, Notice) and event.code == "model_unavailable":
                            # The model failed: the sentence still held is judged and goes
                            # out before the fallback reply, never glued after it.
                            for check in judge(await asyncio.to_thread(stream.flush)):
                                judged.append(check)
                                if check.supported:
                                    shown.append(check.raw)
                                    yield Token(check.raw)
                        if not isinstance(event, Token):
                            yield event
                            continue
                        if record.model_error:  # the fallback reply: not a claim to judge
                            yield event
                            continue
                        for check in judge(await asyncio.to_thread(stream.feed, event.text)):
                            judged.append(check)
                            if check.supported:
                                shown.append(check.raw)
                                yield Token(check.raw)
                            elif rules.on_unsupported != "drop" and not retried:
                                stop = check
                                break
                        if stop is not None:
                            break
                if stop is None and stream.held.strip():
                    for check in judge(await asyncio.to_thread(stream.flush)):
                        judged.append(check)
                        if check.supported:
                            shown.append(check.raw)
                            yield Token(check.raw)
                        elif rules.on_unsupported != "drop" and not retried and stop is None:
                            stop = check
            if stop is None or output.blocked is not None:
                break
            if rules.on_unsupported == "refer":
                titles = ", ".join(dict.fromkeys(p.citation.title for p in prompt.passages))
                reply = rules.refer_reply.format(articles=titles or "our help center")
                yield Token(("\n\n" if shown else "") + reply)
                break
            retried = True
            missing = ", ".join(stop.missing) or "details the articles do not give"
            system = prompt.messages[0]
            stricter = ChatMessage(
                "system",
                system.content
                + "\n\nState only facts, numbers and names written in the articles above; "
                f"these are not in them: {missing}. If the articles do not say, say so.",
            )
            messages = [stricter, *prompt.messages[1:]]
            if shown:
                messages.append(ChatMessage("assistant", "".join(shown)))
        unsupported = [c for c in judged if not c.supported]
        record.unsupported = len(unsupported)
        if unsupported:
            action = ACTION_OF[rules.on_unsupported]
            policies.audit.record(replace(context, point="output"), findings(unsupported, action))

    async def _ask_model(self, messages: list[ChatMessage], max_tokens: int) -> str:
        """A short side question to the model (greedy); "" when it fails."""
        params = GenerationParams(max_tokens, 0.0, min(30.0, self._settings.llm.timeout_s))
        pieces: list[str] = []
        try:
            async with aclosing(self.llm.stream(messages, params)) as stream:
                async for piece in stream:
                    pieces.append(piece)
        except (ModelError, Busy) as exc:
            log.warning("side question to the model failed: %s", exc.message)
            return ""
        return "".join(pieces).strip()

    async def _standalone(
        self, question: str, history: list[Turn], record: _TurnAudit, quoting: bool = False
    ) -> str:
        """The question as a stand-alone search query: a follow-up ("and for express?") is
        rewritten with what it refers to, from the conversation (redacted text only). With
        quoted answers every message gets its conversation's subject in front
        (`context_query`); otherwise the model's rewrite is used only when it is a question
        that adds no number of its own, else the same `context_query`."""
        mode = self._settings.sessions.rewrite_followups
        if mode == "off" or not history:
            return question
        # Quoted answers widen every message of a conversation ("how long is the link good
        # for" names no subject, but is no "and ..."): the quote scorer weighs the message's
        # own meaning most, and reads a message that does not point back alone when it is
        # off every subject, so a change of subject loses nothing.
        if not quoting and not looks_like_followup(question):
            return question
        fallback = context_query(question, [t.text for t in history if t.role == "user"])
        if fallback == question:
            return question
        if mode == "concat" or quoting:
            record.rewritten = "concat"
            return fallback
        recent = history[-4:]
        transcript = "\n".join(
            f"{'Customer' if t.role == 'user' else 'Assistant'}: {t.text[:400]}" for t in recent
        )
        with stage("rewrite"):
            text = await self._ask_model(
                [
                    ChatMessage("system", REWRITE_INSTRUCTION),
                    ChatMessage("user", f"{transcript}\nCustomer: {question}"),
                ],
                48,
            )
        text = text.splitlines()[0].strip().strip('"') if text else ""
        if not is_rewrite(text, f"{transcript}\n{question}"):
            record.rewritten = "concat"
            return fallback
        record.rewritten = "llm"
        return text

    async def _remember(self, session: Session, policies: PolicyEngine, context: Context) -> None:
        """Fold the turns that left the history window into the running summary (made by the
        model, redacted by the storage point), every `summarize_every` such turns."""
        settings = self._settings.sessions
        if not settings.summarize:
            return
        try:
            turns = await self.store.history(session.id)
            older = turns[: -settings.history_turns] if settings.history_turns else turns
            fresh = session_meta_after(session, older)
            if len(fresh) < settings.summarize_every:
                return
            earlier = session.meta.get("summary", "")
            transcript = "\n".join(
                f"{'Customer' if t.role == 'user' else 'Assistant'}: {t.text[:600]}" for t in fresh
            )
            with stage("summarize"):
                text = await self._ask_model(
                    [
                        ChatMessage("system", SUMMARY_INSTRUCTION),
                        ChatMessage(
                            "user",
                            (f"Summary so far: {earlier}\n\n" if earlier else "") + transcript,
                        ),
                    ],
                    120,
                )
            if not text:
                return
            stored = await policies.redact_for_storage(text, replace(context, point="storage"))
            await self.store.set_meta(
                session.id, {"summary": stored, "summary_upto": fresh[-1].message_id}
            )
        except SwitchboardError as exc:  # memory is a nicety: never fail the turn for it
            log.warning("conversation %s: summary not updated: %s", session.id, exc.message)

    def _handoff(
        self,
        policies: PolicyEngine,
        channel: str,
        conversation: str,
        turns: list[Turn],
        asked: str,
    ) -> str:
        """Why this conversation should go to a person now: asked for, or by the counts."""
        no_answers = 0
        for turn in reversed([t for t in turns if t.role == "assistant"]):
            if turn.kind != "no_answer":
                break
            no_answers += 1
        blocks = sum(1 for t in turns if t.kind == "blocked")
        reason = asked or policies.handoff_due(channel, no_answers, blocks)
        if reason:
            event = {"conversation": conversation, "channel": channel, "reason": reason}
            audit.info("handoff %s", json.dumps(event))
        return reason

    async def _act(
        self, session: Session, question: str, channel: str, policies: PolicyEngine
    ) -> ActionReply | None:
        """The action stage's reply, or None (not an action). A bug in it costs this turn's
        action, never the turn: the failure reply (with the offer of a person) is sent."""
        assert self.actions is not None
        try:
            return await self.actions.handle(
                session, question, channel, policies, self._help_center_answers
            )
        except SwitchboardError:
            raise
        except Exception:
            log.exception("conversation %s: the action stage failed", session.id)
            return ActionReply(self.actions.config.failure, failed=True)

    async def _action_answer(
        self,
        policies: PolicyEngine,
        session: Session,
        asked: _Asked,
        act: ActionReply,
        record: _TurnAudit,
        context: Context,
    ) -> AsyncGenerator[ReplyEvent, None]:
        """An action's reply as the turn's answer: through the output policy like any (an
        action ran: its reply may say what it did)."""
        output = policies.output_filter(replace(context, acted=True))
        parts: list[str] = []
        for piece in (await policies.feed(output, act.text), await policies.flush(output)):
            if piece:
                parts.append(piece)
                yield Token(piece)
        if output.blocked is not None:
            record.blocked = output.blocked.reason
            reply = output.blocked.reply or policies.messages(asked.channel).blocked
            answer = Turn("assistant", reply, kind="blocked")
            yield Notice("answer_withdrawn", "The answer was withdrawn by a policy.")
        else:
            answer = Turn(
                "assistant", "".join(parts).strip(), kind="action", custom=tuple(act.custom)
            )
        await self.store.append(
            session.id, [await _for_storage(policies, answer, context)], asked.lease
        )
        handoff = asked.handoff
        if act.handoff == "pause":
            # An action that pauses the conversation hands it to a person (a failed one
            # only offers one: its reply says so).
            handoff = handoff or "the action asked for a person"
        await self._hand_off(session.id, handoff)
        if act.handoff == "resume" and self.desk is not None:
            await self.desk.resolve(session.id, "the assistant")
        yield self._final(session, answer, asked.in_reply_to, handoff)

    async def _hand_off(self, conversation_id: str, reason: str) -> None:
        """Ask the desk for a person when the turn's triggers fired (a fault there costs the
        handoff, never the answer)."""
        if not reason or self.desk is None:
            return
        try:
            await self.desk.request(conversation_id, reason, tell_customer=False)
        except SwitchboardError as exc:
            log.error("conversation %s: handoff failed: %s", conversation_id, exc.message)

    def _log(self, record: _TurnAudit, started: float) -> None:
        record.total_s = time.perf_counter() - started
        audit.info("turn %s", json.dumps(asdict(record)))

    async def _retrieve(
        self,
        question: str,
        record: _TurnAudit,
        context: Context,
        quoting: bool = False,
        topic: Sequence[str] = (),
        alone: str = "",
    ) -> list[Passage]:
        """The passages for `question`; `alone`: the customer's message by itself when
        `question` is it widened with the conversation (quoting: both are searched, the
        widened one's passages first)."""
        try:
            searched = time.perf_counter()
            with stage("retrieval"):
                if quoting and isinstance(self.retriever, ArticleSearch):
                    # Whole sections of the best articles: the answering sentence may sit
                    # in any section of an article, not only in its closest chunk.
                    answers = self._settings.answers
                    passages, confidence = await self.retriever.search_articles(
                        question, answers.articles, answers.sections_per_article, topic
                    )
                    if alone:
                        more, _ = await self.retriever.search_articles(
                            alone, answers.articles, answers.sections_per_article
                        )
                        seen = {(p.citation.source, p.text) for p in passages}
                        passages += [p for p in more if (p.citation.source, p.text) not in seen]
                else:
                    passages, confidence = await self.retriever.search_with_confidence(
                        question, self._settings.knowledge.top_k
                    )
            RETRIEVAL_SECONDS.observe(time.perf_counter() - searched)
            threshold = self.retriever.threshold
            record.confidence = confidence
            # Quoted answers decline on their own, sharper signal: no sentence of the help
            # center answers well enough (`answers.min_score`).
            if (
                self._settings.knowledge.abstain
                and not quoting
                and confidence is not None
                and threshold is not None
            ):
                record.abstained = confidence < threshold
            # Passages pass the policies too; if that fails they are dropped, never used raw.
            passages = await self.policies.screen_passages(passages, context)
        except Exception as exc:  # degrade: answer without passages, and say so in the audit
            log.exception("retrieval failed; answering without passages")
            record.retrieval_error = type(exc).__name__
            return []
        record.passages = len(passages)
        return passages

    async def _generate(
        self,
        policies: PolicyEngine,
        output: OutputFilter,
        messages: list[ChatMessage],
        record: _TurnAudit,
        started: float,
    ) -> AsyncGenerator[ReplyEvent, None]:
        llm = self._settings.llm
        params = GenerationParams(llm.max_new_tokens, llm.temperature, llm.timeout_s)

        def release(text: str) -> Token:
            if record.first_token_s is None:  # the customer sees the first words now
                record.first_token_s = time.perf_counter() - started
            return Token(text)

        try:
            stream = self.llm.stream(messages, params)
            try:
                with stage("llm.generate"):
                    async for piece in stream:
                        if safe := await policies.feed(output, piece):
                            yield release(safe)
                        if output.done:  # blocked or cut: stop the model, it is wasted work
                            break
            finally:
                await stream.aclose()
            if tail := await policies.flush(output):
                yield release(tail)
        except ModelError as exc:
            log.warning("model failed (%s); sending the fallback reply", exc.message)
            record.model_error = exc.code
            if tail := await policies.flush(output):
                yield release(tail)
            if output.blocked is None:
                said = record.first_token_s is not None
                yield Notice("model_unavailable", "The assistant could not finish this answer.")
                fallback = policies.messages(output.context.channel).fallback
                yield release(("\n\n" if said else "") + fallback)

    @staticmethod
    def _final(session: Session, turn: Turn, in_reply_to: str | None, handoff: str = "") -> Message:
        return Message(
            id=turn.message_id,
            text=turn.text,
            conversation_id=session.id,
            citations=turn.citations,
            in_reply_to=in_reply_to,
            handoff=handoff,
            custom=turn.custom,
            kind=turn.kind,
        )


def _client_of(message: InboundMessage) -> str:
    """Whose line a turn waits in (bot/admission.py): the address of a widget or REST
    caller, the Slack user, else the conversation (a webhook's)."""
    if message.ip:
        return "ip:" + message.ip
    if message.user:
        return "user:" + message.user
    return f"{message.channel}:{message.conversation_id or ''}"


def _sent(turns: list[Turn], client_id: str | None) -> tuple[Turn, Turn | None] | None:
    """The user turn the client sent as `client_id`, and the answer stored after it."""
    if not client_id:
        return None
    for i, turn in enumerate(turns):
        if turn.role == "user" and turn.client_id == client_id:
            after = turns[i + 1] if i + 1 < len(turns) else None
            return turn, after if after is not None and after.role == "assistant" else None
    return None
