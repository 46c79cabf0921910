"""The policy engine: every point of a turn (input, retrieval, output, storage) through the
stages the policy file lists there, per channel.

Presidio, spaCy and the classifiers are synchronous and CPU-bound, so every stage runs on one
dedicated worker thread: the event loop never blocks, and each model is only ever used from a
single thread (spaCy does not promise thread safety for a shared pipeline). Rate limits are
the exception: they are Redis round trips, made on the event loop before the input stages.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from bot.errors import ConfigError
from bot.types import Passage
from knowledge.embeddings import Embedder
from policies.audit import PolicyAudit
from policies.base import Abandonable, Context, Point, StartsEarly, TextPolicy
from policies.handoff import HandoffStage
from policies.harm import ClaimsStage, HarmStage
from policies.injection import InjectionStage
from policies.limits import LengthStage, RateLimiter
from policies.links import LinkStage
from policies.output import OutputFilter
from policies.pii import (
    JUDGED_ENTITIES,
    KeepingRedactor,
    PresidioRedactor,
    Redaction,
    Redactor,
)
from policies.pii_rules import PiiPolicy
from policies.pseudonyms import Pseudonymizer, PseudonymVault
from policies.schema import Messages, PolicyFile, default_policy_path, load_policy
from policies.scrub import ScrubStage
from policies.stream import StreamingRedactor
from policies.topics import TopicStage
from policies.toxicity import ToxicityStage
from policies.verdicts import Allow, Block, Finding, Verdict

T = TypeVar("T")
RedactorFactory = Callable[[PiiPolicy], Redactor]


def pii_findings(redaction: Redaction) -> tuple[Finding, ...]:
    """What a redaction replaced, as the audit counts it: one finding per entity type."""
    counts = Counter(found.entity_type for found in redaction.entities)
    return tuple(
        Finding("pii", kind, "redact", entity_type=kind, count=n) for kind, n in counts.items()
    )


class PiiStage:
    """The `pii` stage: a `Redactor` behind the `TextPolicy` contract. With
    `operator: pseudonym`, replacements are the conversation's own tags (see `pseudonyms`)."""

    name = "pii"

    def __init__(self, redactor: Redactor, pseudonyms: Pseudonymizer | None = None) -> None:
        self.redactor = redactor
        self.pseudonyms = pseudonyms

    def warm_up(self) -> None:
        self.redactor.warm_up()

    def for_conversation(self, conversation: str) -> Redactor:
        """The redactor to use for `conversation`'s text."""
        if self.pseudonyms is None or not conversation:
            return self.redactor
        return self.pseudonyms.redactor(self.redactor, conversation)

    def redact(self, text: str, conversation: str = "") -> Redaction:
        return self.for_conversation(conversation).redact(text)

    def check(self, text: str, context: Context) -> Verdict:
        try:
            redaction = self.redact(text, context.conversation)
        except Exception as exc:  # fail closed: text that could not be checked goes nowhere
            return Block("pii check failed", "", (Finding(self.name, type(exc).__name__, "error"),))
        return Allow(redaction.text, redaction.entity_types, pii_findings(redaction))


class _NoRedactor:
    """For an output point without `pii`: the stream filter still cuts at safe boundaries."""

    def warm_up(self) -> None:
        return None

    def redact(self, text: str) -> Redaction:
        return Redaction(text, ())


# Screened help-center passages kept per policy engine (the texts of a large help center's
# most asked sections).
SCREENED_CACHE = 4096


@dataclass
class _Pipeline:
    """One channel's compiled policy: its stages per point."""

    policy: PolicyFile
    pii: PiiStage
    points: dict[Point, list[TextPolicy]]
    rate: RateLimiter
    handoff: HandoffStage
    vault: PseudonymVault | None  # with `operator: pseudonym` and Redis


class PolicyEngine:
    """Applies one `PolicyFile` (with its per-channel overrides) to conversations.

    Cheap to construct; `warm_up()` loads every stage's models (seconds for presidio). The
    async methods may be called from any number of conversations at once: their work is
    queued on the engine's single worker thread. `close()` stops that thread.

    `redactor` is used for the file's own `pii` section; other sections (channel overrides)
    get `redactor_factory(section)` (default: presidio). `embedder` serves the blocked topics
    (default: the packaged MiniLM, loaded only if the file declares topics); `redis` is for
    rate limits (none: no rate limits); `vocabulary` returns the knowledge base's words, which
    the storage `scrub` stage leaves alone (none: only English words are).
    """

    def __init__(
        self,
        policy: PolicyFile,
        redactor: Redactor | None = None,
        *,
        redactor_factory: RedactorFactory | None = None,
        embedder: Embedder | None = None,
        redis: Any | None = None,
        audit: PolicyAudit | None = None,
        vault_ttl_s: int = 7 * 24 * 3600,
        vocabulary: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self._policy = policy
        self._vocabulary = vocabulary
        self._vault_ttl = vault_ttl_s
        self._factory: RedactorFactory = redactor_factory or (
            type(redactor) if redactor is not None else PresidioRedactor
        )
        self._embedder = embedder
        self._redis = redis
        self.audit = audit or PolicyAudit()
        self._stages: dict[tuple[str, str], Any] = {}
        if redactor is not None:
            self._stages[("pii", policy.pii.model_dump_json())] = PiiStage(
                redactor, self._pseudonyms(policy)
            )
        self._pipelines: dict[str, _Pipeline] = {}
        # Screened passages by (pipeline, text): read and written on the worker thread only.
        self._screened: OrderedDict[tuple[int, str], Verdict] = OrderedDict()
        self._base = self._compile(policy)
        for channel in policy.channels:
            self._pipelines[channel] = self._compile(policy.for_channel(channel))
        # Threads start on first use, so this costs nothing until the first call.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policies")

    @classmethod
    def from_file(
        cls,
        path: str | Path | None = None,
        *,
        embedder: Embedder | None = None,
        redis: Any | None = None,
        audit: PolicyAudit | None = None,
        vocabulary: Callable[[], Collection[str]] | None = None,
    ) -> PolicyEngine:
        """The engine for the policy file at `path` (the bundled default when None)."""
        policy = load_policy(path if path is not None else default_policy_path())
        return cls(policy, embedder=embedder, redis=redis, audit=audit, vocabulary=vocabulary)

    @property
    def vocabulary(self) -> Callable[[], Collection[str]] | None:
        """Where the `scrub` stage finds the knowledge base's words (for a reloaded file)."""
        return self._vocabulary

    @property
    def policy(self) -> PolicyFile:
        """The validated policy file this engine applies."""
        return self._policy

    def pipeline(self, channel: str | None) -> _Pipeline:
        return self._pipelines.get(channel or "", self._base)

    def messages(self, channel: str | None) -> Messages:
        """The fixed replies for `channel` (its overrides applied)."""
        return self.pipeline(channel).policy.messages

    def warm_up(self) -> None:
        """Load every stage's models, on the worker thread that will use them."""
        self._worker.submit(self._warm_up_all).result()

    def _warm_up_all(self) -> None:
        for stage in self._stages.values():
            stage.warm_up()

    # -- the four points -------------------------------------------------------------------

    async def check_input(self, text: str, context: Context | None = None) -> Verdict:
        """The verdict on a user's message: rate limits, then the input stages in order.

        `Allow` carries the text with PII replaced, the PII types found and, when a handoff
        trigger fired, why; `Block` carries the reply to send instead of an answer.
        """
        context = context or Context("input")
        pipeline = self.pipeline(context.channel)
        limited = await pipeline.rate.check(context)
        self.audit.record(context, limited.findings)
        if isinstance(limited, Block):
            return limited
        verdict = await self._run(self._apply, pipeline.points["input"], text, context)
        await self._keep_pseudonyms(pipeline)
        self.audit.record(context, verdict.findings)
        if isinstance(verdict, Block) and not verdict.reply:
            return replace(verdict, reply=pipeline.policy.messages.blocked)
        return verdict

    async def screen_passages(
        self, passages: Sequence[Passage], context: Context | None = None
    ) -> list[Passage]:
        """Knowledge-base passages as the prompt may carry them: each through the retrieval
        stages (PII replaced; a passage carrying injected instructions is dropped)."""
        if not passages:
            return []
        context = replace(context, point="retrieval") if context else Context("retrieval")
        pipeline = self.pipeline(context.channel)
        stages = pipeline.points["retrieval"]
        # The help center's passages come back turn after turn, and screening one is the
        # costliest step of a quoted answer (presidio over every section: 0.37 s of a 0.45 s
        # turn). A passage's verdict depends only on its text and the pipeline, unless PII
        # is replaced by pseudonyms (those are the conversation's own).
        cacheable = pipeline.policy.pii.operator != "pseudonym"

        def screen(passage: Passage) -> Verdict:
            key = (id(pipeline), passage.text)
            if cacheable and (hit := self._screened.get(key)) is not None:
                self._screened.move_to_end(key)
                return hit
            verdict = self._apply(stages, passage.text, context)
            # A stage that failed (fail closed: dropped) is tried again next time.
            if cacheable and all(f.action != "error" for f in verdict.findings):
                self._screened[key] = verdict
                while len(self._screened) > SCREENED_CACHE:
                    self._screened.popitem(last=False)
            return verdict

        def screen_all() -> list[tuple[Passage, Verdict]]:
            return [(p, screen(p)) for p in passages]

        screened = await self._run(screen_all)
        await self._keep_pseudonyms(pipeline)
        kept = []
        for passage, verdict in screened:
            self.audit.record(context, verdict.findings)
            if isinstance(verdict, Allow):
                kept.append(replace(passage, text=verdict.text))
        return kept

    async def redact_for_storage(self, text: str, context: Context | None = None) -> str:
        """`text` with PII replaced: the only form that may reach Redis, logs or training."""
        return (await self.storage_redaction(text, context)).text

    async def storage_redaction(self, text: str, context: Context | None = None) -> Redaction:
        """`redact_for_storage` with what the PII stage replaced (for reports that count
        entities); the storage stages after it (`scrub`) have run on the text too."""
        context = replace(context, point="storage") if context else Context("storage")
        pipeline = self.pipeline(context.channel)
        redaction = await self._run(pipeline.pii.redact, text, context.conversation)
        await self._keep_pseudonyms(pipeline)
        return replace(redaction, text=self._after_pii(pipeline, redaction.text, context))

    async def redact_on_receipt(self, text: str, context: Context) -> str:
        """A customer's message redacted the moment a channel receives it (Slack, webhooks
        queue only the redacted text for the turn): what it held is audited and counted as
        the input policy's findings would be — the turn itself will see none of it."""
        redaction = await self.storage_redaction(text, context)
        self.audit.record(replace(context, point="input"), pii_findings(redaction))
        return redaction.text

    async def scrub_for_storage(self, text: str, context: Context | None = None) -> str:
        """Text that has been through the PII stage already (an allowed message's `Allow.text`,
        an answer out of `output_filter`) made fit to store: the storage stages after `pii`.
        Cheap (no model): run on the event loop."""
        context = replace(context, point="storage") if context else Context("storage")
        return self._after_pii(self.pipeline(context.channel), text, context)

    def _after_pii(self, pipeline: _Pipeline, text: str, context: Context) -> str:
        for stage in pipeline.points["storage"]:
            verdict = stage.check(text, context)
            self.audit.record(context, verdict.findings)
            if isinstance(verdict, Allow):  # storage stages rewrite; they never block
                text = verdict.text
        return text

    def output_filter(self, context: Context | None = None, known: str = "") -> OutputFilter:
        """A new filter for one answer; drive it with `feed` and `flush`. `known`: the
        help-center text the answer is grounded in, whose words are never redacted."""
        context = replace(context, point="output") if context else Context("output")
        pipeline = self.pipeline(context.channel)
        policy = pipeline.policy
        names = policy.stages.output
        redactor: Redactor = (
            pipeline.pii.for_conversation(context.conversation) if "pii" in names else _NoRedactor()
        )
        if known and "pii" in names:
            redactor = KeepingRedactor(redactor, known=known)
        stages = pipeline.points["output"]
        max_chars = policy.limits.max_answer_chars if "limits" in names else 0
        stream = StreamingRedactor(redactor, policy.output.max_hold_chars)
        return OutputFilter(stream, stages, context, max_chars)

    async def feed(self, output: OutputFilter, text: str) -> str:
        """Pass streamed model text through `output`; return what may be shown now.

        Most pieces only join the held text (on the event loop); the worker thread is asked
        only when a sentence or a forced cut could release something. Check `output.done`
        after each call: a blocked or cut answer must stop.
        """
        cuts = output.add(text)
        released = await self._run(output.release, cuts) if cuts else ""
        self._audit_output(output)
        if released:
            await self._keep_pseudonyms(self.pipeline(output.context.channel))
        return released

    async def flush(self, output: OutputFilter) -> str:
        """The answer ended (or failed): return the rest of `output`, redacted and judged."""
        released = await self._run(output.flush)
        self._audit_output(output)
        await self._keep_pseudonyms(self.pipeline(output.context.channel))
        return released

    def handoff_due(self, channel: str | None, no_answers_in_a_row: int, blocks: int) -> str:
        """Why the conversation should go to a person now, by the counting triggers."""
        return self.pipeline(channel).handoff.due(no_answers_in_a_row, blocks)

    def close(self) -> None:
        """Stop the worker thread; queued work is cancelled, the running call finishes."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    # -- internals ---------------------------------------------------------------------------

    def _audit_output(self, output: OutputFilter) -> None:
        if output.findings:
            findings, output.findings = output.findings, []
            self.audit.record(output.context, findings)

    @staticmethod
    def _apply(stages: Sequence[TextPolicy], text: str, context: Context) -> Verdict:
        """Run `stages` in order on the worker thread; the first `Block` ends it.

        A stage that `StartsEarly` (topics) is started on the text as written first, so its
        slow part runs on its own thread while the stages before it run here.
        """
        started = [
            stage.start(text) if isinstance(stage, StartsEarly) else stage for stage in stages
        ]
        findings: list[Finding] = []
        entities: list[str] = []
        handoff = ""
        for done, stage in enumerate(started):
            try:
                verdict = stage.check(text, context)
            except Exception as exc:  # a stage broke its contract: fail closed, say which
                verdict = Block(
                    f"{stage.name} failed", "", (Finding(stage.name, type(exc).__name__, "error"),)
                )
            findings.extend(verdict.findings)
            if isinstance(verdict, Block):
                for later in started[done + 1 :]:
                    if isinstance(later, Abandonable):
                        later.abandon()
                return replace(verdict, findings=tuple(findings))
            text = verdict.text
            entities.extend(verdict.entities)
            handoff = handoff or verdict.handoff
        return Allow(text, tuple(dict.fromkeys(entities)), tuple(findings), handoff)

    def _compile(self, policy: PolicyFile) -> _Pipeline:
        pii = self._stage(
            "pii",
            policy.pii,
            lambda: PiiStage(self._factory(policy.pii), self._pseudonyms(policy)),
        )
        blocked = policy.messages.blocked
        makers: dict[str, Callable[[], TextPolicy]] = {
            "pii": lambda: pii,
            "injection": lambda: self._stage(
                "injection", policy.injection, lambda: InjectionStage(policy.injection, blocked)
            ),
            "harm": lambda: self._stage("harm", policy.harm, lambda: HarmStage(policy.harm)),
            "claims": lambda: self._stage(
                "claims", policy.claims, lambda: ClaimsStage(policy.claims)
            ),
            "toxicity": lambda: self._stage(
                "toxicity", policy.toxicity, lambda: ToxicityStage(policy.toxicity, blocked)
            ),
            "topics": lambda: self._stage(
                "topics",
                policy.topics,
                lambda: TopicStage(policy.topics, blocked, self._topic_embedder(policy)),
            ),
            "limits": lambda: self._stage(
                "limits", policy.limits, lambda: LengthStage(policy.limits)
            ),
            "links": lambda: self._stage("links", policy.links, lambda: LinkStage(policy.links)),
            "handoff": lambda: self._stage(
                "handoff", policy.handoff, lambda: HandoffStage(policy.handoff)
            ),
            "scrub": lambda: self._stage(
                "scrub", policy.scrub, lambda: ScrubStage(policy.scrub, self._vocabulary)
            ),
        }
        # Storage starts with the PII redaction (`redact_for_storage`; its stages here are the
        # ones after it), and at the output point PII and the answer's length are the
        # stream's own redactor and cut (`output_filter`): neither needs a stage object.
        points: dict[Point, list[TextPolicy]] = {
            "input": [makers[n]() for n in policy.stages.input],
            # Help-center text: structured PII only (see `KeepingRedactor`).
            "retrieval": [
                PiiStage(KeepingRedactor(pii.redactor, skip_types=JUDGED_ENTITIES), pii.pseudonyms)
                if n == "pii"
                else makers[n]()
                for n in policy.stages.retrieval
            ],
            "output": [makers[n]() for n in policy.stages.output if n not in ("pii", "limits")],
            "storage": [makers[n]() for n in policy.stages.storage if n != "pii"],
        }
        handoff = self._stage("handoff", policy.handoff, lambda: HandoffStage(policy.handoff))
        rate = RateLimiter(policy.limits, self._redis)
        return _Pipeline(policy, pii, points, rate, handoff, self._vault(policy.pii))

    def _pseudonyms(self, policy: PolicyFile) -> Pseudonymizer | None:
        if policy.pii.operator != "pseudonym":
            return None
        try:
            return Pseudonymizer(policy.pii, policy.pii.vault_key())
        except ConfigError:
            # Said again, with the fix, by the redactor's warm-up; tags need the key too.
            return None

    def _vault(self, pii: PiiPolicy) -> PseudonymVault | None:
        if pii.operator != "pseudonym" or self._redis is None or not pii.vault_key():
            return None
        return PseudonymVault(self._redis, pii, pii.vault_key(), self._vault_ttl)

    async def _keep_pseudonyms(self, pipeline: _Pipeline) -> None:
        """Hand the values behind new tags to the vault (kept encrypted in Redis)."""
        names = pipeline.pii.pseudonyms
        if names is None:
            return
        pending = names.take()
        if pipeline.vault is not None and pending:
            await pipeline.vault.keep(pending)

    async def reveal(self, conversation: str, text: str, channel: str | None = None) -> str:
        """`text` with the conversation's pseudonyms turned back into the real values, for a
        human agent. Refused (`PermissionError`) unless the policy uses pseudonyms, lets
        agents see values (`pii.reveal_to_agents`) and has a vault (Redis)."""
        pipeline = self.pipeline(channel)
        vault = pipeline.vault
        if not pipeline.policy.pii.reveal_to_agents or vault is None:
            raise PermissionError(
                "this policy does not let agents see personal data "
                "(needs pii.operator: pseudonym, pii.reveal_to_agents: true and Redis)"
            )
        return await vault.reveal(conversation, text)

    def _topic_embedder(self, policy: PolicyFile) -> Embedder | None:
        if self._embedder is None and policy.topics.enabled and policy.topics.blocked:
            from knowledge.embeddings import MiniLMEmbedder

            self._embedder = MiniLMEmbedder()  # loads in warm_up, with the topics' examples
        return self._embedder

    def _stage(self, name: str, section: Any, make: Callable[[], T]) -> T:
        """One instance per distinct section: channels that change nothing share stages."""
        key = (name, section.model_dump_json())
        if key not in self._stages:
            self._stages[key] = make()
        stage: T = self._stages[key]
        return stage

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, function, *args)
