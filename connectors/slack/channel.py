"""The Slack channel: the bot answers in Slack, and agents take handoffs in a support channel.

Inbound (every request verified with the signing secret, acknowledged at once; the work is
a job in the durable queue, so a process dying after the acknowledgement loses nothing):

- `POST /slack/events` (Events API): `url_verification` is answered; an `app_mention` or a
  direct message starts a turn (a thread is a conversation; a DM channel is one); a message
  in a handoff thread of the support channel is an agent's reply to the customer. Bot
  messages (ours included) and edits are ignored. Deliveries are deduplicated by `event_id`,
  so Slack's retries (`X-Slack-Retry-Num`) never produce a second reply.
- `POST /slack/commands`: `/ask QUESTION` answers in the channel; `/switchboard resolve|close|
  handoff CONVERSATION_ID` for agents.
- `POST /slack/interactions`: the Resolve and Close buttons of a handoff thread.

Text is redacted by the policy's storage point before it is queued: nothing un-redacted is
kept in Redis, not even for the moments before the turn runs.

Outbound: answers through `chat.postMessage` in the thread, markdown turned into mrkdwn,
long answers split, citations as links; each piece remembered once posted, so a job run
again after a crash does not post it twice. Slack's 429s are waited out (`Retry-After`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from contextlib import aclosing
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bot.errors import (
    BadRequest,
    Busy,
    ConversationNotFound,
    LeaseLost,
    StoreUnavailable,
    SwitchboardError,
)
from bot.handoff import WITH_AGENT, HandoffDesk, unsealed
from bot.jobs import GiveUp, Job, JobQueue, RetryLater, backoff
from bot.manager import ConversationManager
from bot.settings import Settings
from bot.types import InboundMessage, Message, Notice, Token
from connectors.kv import KeyValue
from connectors.slack.api import RateLimited, SlackApi, SlackApiError
from connectors.slack.format import escape, sources, split, to_mrkdwn
from connectors.slack.signature import InvalidSignature, verify_slack_request
from connectors.web.turns import citation_url
from policies.base import Context

log = logging.getLogger(__name__)
COMMAND_MARK_TTL_S = 24 * 3600  # a slash command's trigger id, remembered for a day
router = APIRouter(prefix="/slack", tags=["channels"])

RESOLVE, CLOSE = "switchboard_resolve", "switchboard_close"
POSTED_TTL_S = 24 * 3600
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>\s*")


class SlackChannel:
    """One process's Slack connector: the routes' work, the jobs, the agents' console."""

    def __init__(
        self,
        settings: Settings,
        manager: ConversationManager,
        desk: HandoffDesk,
        queue: JobQueue,
        kv: KeyValue,
    ) -> None:
        slack = settings.slack
        assert slack.signing_secret is not None and slack.bot_token is not None
        self.settings = settings
        self.manager = manager
        self.desk = desk
        self.queue = queue
        self.kv = kv
        self.api = SlackApi(slack.bot_token.get_secret_value(), slack.api_url, slack.timeout_s)
        self._secret = slack.signing_secret.get_secret_value()
        self._bot_user = slack.bot_user_id
        self._names: dict[str, str] = {}
        self._whoami: asyncio.Task[str | None] | None = None
        self._ttl = settings.sessions.ttl_s
        self.support = slack.support_channel
        queue.handle("slack.turn", self._turn)
        queue.handle("slack.agent", self._agent)
        queue.handle("slack.post", self._post_job)
        desk.channels["slack"] = self._deliver
        if self.support:
            desk.console = "slack"
            queue.handle("handoff.open", self._open)
            queue.handle("handoff.relay", self._relay)
            queue.handle("handoff.note", self._note)

    async def close(self) -> None:
        if self._whoami is not None:
            self._whoami.cancel()
        await self.api.close()

    def verify(self, headers: Any, body: bytes) -> None:
        verify_slack_request(self._secret, headers, body)

    # --- who is who ---------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the bot's own user id in the background (events wait for no Slack call)."""
        if self._bot_user is None:
            self._whoami = asyncio.create_task(self.bot_user(), name="slack-auth-test")

    async def bot_user(self) -> str | None:
        if self._bot_user is None:
            try:
                self._bot_user = str((await self.api.call("auth.test"))["user_id"])
            except (SlackApiError, RateLimited, httpx.HTTPError, KeyError) as exc:
                log.warning("slack: auth.test failed (%s); set SWITCHBOARD_SLACK__BOT_USER_ID", exc)
        return self._bot_user

    async def quick_name(self, user: str) -> str:
        """`user_name` within a second (a request Slack waits on must answer in 3 s)."""
        try:
            return await asyncio.wait_for(self.user_name(user), 1.0)
        except TimeoutError:
            return "An agent"

    async def user_name(self, user: str) -> str:
        """A Slack user's display name (for the customer to see who is answering)."""
        if user not in self._names:
            try:
                info = (await self.api.call("users.info", user=user))["user"]
                profile = info.get("profile") or {}
                name = profile.get("display_name") or profile.get("real_name") or info.get("name")
                self._names[user] = str(name or "An agent")
            except (SlackApiError, RateLimited, httpx.HTTPError, KeyError, TypeError) as exc:
                log.warning("slack: users.info failed: %s", exc)
                return "An agent"
        return self._names[user]

    # --- inbound ------------------------------------------------------------------------

    async def on_event(self, payload: dict[str, Any]) -> None:
        """Queue the work an Events API callback asks for (nothing for what we ignore)."""
        event, event_id = payload.get("event"), payload.get("event_id")
        if not isinstance(event, dict) or not isinstance(event_id, str):
            return
        user, channel = event.get("user"), event.get("channel")
        if event.get("bot_id") or event.get("subtype") or not user or not channel:
            return  # bots (ourselves included), edits, joins...
        if user == self._bot_user:  # learned at start (and our posts carry a bot_id anyway)
            return
        kind, thread = event.get("type"), event.get("thread_ts")
        text = _MENTION.sub("", str(event.get("text") or "")).strip()
        if channel == self.support:
            if kind == "message" and thread:  # an agent, in a handoff's thread
                cid = await self.kv.get(f"slack:handoff:{channel}:{thread}")
                session = None if cid is None else await self.manager.store.get(cid)
                if session is not None and text:
                    # Redacted before it is queued, but for the agent's own name.
                    name = await self.quick_name(user)
                    redacted = await self.desk.redact_agent(text, name, session)
                    payload = {
                        "conversation": session.id,
                        "user": user,
                        "text": redacted,
                        "key": event_id,
                    }
                    if self.desk.sealer is not None and redacted != text:
                        # The words as written go to their customer, sealed (bot.handoff).
                        payload["sealed"] = self.desk.sealer.seal(text)
                    await self.queue.put("slack.agent", payload, once=f"slack:{event_id}")
            return
        direct = kind == "message" and event.get("channel_type") == "im"
        team = str(payload.get("team_id") or "")
        if kind == "message" and thread and not direct:
            # A customer's plain reply in their thread reaches the person handling it (the
            # bot itself answers only mentions there).
            await self._to_agent(team, channel, thread, user, text, event_id)
            return
        if kind != "app_mention" and not direct:
            return
        if not text:
            return
        # A mention starts (or continues) the thread under it; a DM channel is one conversation.
        reply_in = thread or (None if direct else event.get("ts"))
        cid = await self.conversation(team, channel, thread if direct else reply_in, user)
        job = {
            "conversation": cid,
            "text": await self._redact(text, cid, "slack"),
            "key": event_id,
            "channel": channel,
            "thread_ts": reply_in,
            "user": _user_id(team, user),  # rate limits count per Slack user
        }
        await self.queue.put("slack.turn", job, once=f"slack:{event_id}")

    async def _to_agent(
        self, team: str, channel: str, thread: str, user: str, text: str, event_id: str
    ) -> None:
        cid = await self.kv.get(f"slack:conv:{team}:{channel}:{thread}")
        if cid is None or not text:
            return
        session = await self.manager.store.get(cid)
        if session is None or session.status not in WITH_AGENT:
            return
        job = {
            "conversation": cid,
            "text": await self._redact(text, cid, "slack"),
            "key": event_id,
            "channel": channel,
            "thread_ts": thread,
            "user": _user_id(team, user),
        }
        await self.queue.put("slack.turn", job, once=f"slack:{event_id}")

    async def conversation(self, team: str, channel: str, thread: str | None, user: str) -> str:
        """The conversation of a Slack thread (or DM channel), made on first use."""
        key = f"slack:conv:{team}:{channel}:{thread or '-'}"
        cid = await self.kv.get(key)
        if cid is not None and await self.manager.store.get(cid) is not None:
            return cid
        session = await self.manager.store.create("slack", _user_id(team, user))
        meta = {"slack_channel": channel, "slack_thread": thread or ""}
        await self.manager.store.set_meta(session.id, meta)
        if cid is None:
            if not await self.kv.put(key, session.id, self._ttl, only_new=True):
                return await self.kv.get(key) or session.id  # another delivery made it first
        else:  # the thread's conversation expired: a new one
            await self.kv.put(key, session.id, self._ttl)
        return session.id

    async def _redact(self, text: str, cid: str, channel: str) -> str:
        context = Context("storage", channel=channel, conversation=cid)
        return await self.manager.policies.redact_on_receipt(text, context)

    async def on_command(self, form: dict[str, str]) -> dict[str, Any]:
        """A slash command; the reply is the command's (ephemeral) response."""
        command, text = form.get("command", ""), form.get("text", "").strip()
        user, channel = form.get("user_id", ""), form.get("channel_id", "")
        if command.lstrip("/") == "switchboard":
            if not self.support or channel != self.support:
                return _ephemeral("Agent commands work in the support channel only.")
            return await self._agent_command(text, user)
        if not text:
            return _ephemeral(f"Ask a question: `{command} How long do refunds take?`")
        team = form.get("team_id", "")
        key = form.get("trigger_id") or hashlib.sha256(json.dumps(form).encode()).hexdigest()
        # A retried command (Slack retries when the first reply was slow) is taken once, and
        # makes no conversation of its own.
        mark = f"slack:cmd-taken:{key}"
        if not await self.kv.put(mark, "1", COMMAND_MARK_TTL_S, only_new=True):
            return _ephemeral("Looking that up…")
        try:
            session = await self.manager.store.create("slack", _user_id(team, user))
            await self.manager.store.set_meta(
                session.id, {"slack_channel": channel, "slack_thread": "", "slack_team": team}
            )
        except BaseException:
            with contextlib.suppress(StoreUnavailable):
                await self.kv.delete(mark)
            raise
        job = {
            "conversation": session.id,
            "text": await self._redact(text, session.id, "slack"),
            "key": key,
            "channel": channel,
            "thread_ts": None,
            "asked_by": user,
            "team": team,
            "user": _user_id(team, user),
        }
        await self.queue.put("slack.turn", job, once=f"slack:cmd:{key}")
        return _ephemeral("Looking that up…")

    async def _agent_command(self, text: str, user: str) -> dict[str, Any]:
        verb, _, arg = text.partition(" ")
        cid = arg.strip()
        usage = (
            "`/switchboard resolve ID` hands the conversation back to the bot, "
            "`/switchboard close ID` ends it, `/switchboard handoff ID` asks for a person. "
            "ID is the conversation id in the handoff thread's first message (or use its "
            "buttons)."
        )
        if verb not in ("resolve", "close", "handoff") or not cid:
            return _ephemeral(usage)
        try:
            if verb == "handoff":
                done = await self.desk.request(cid, "asked by an agent", tell_customer=True)
                return _ephemeral("Handed to a person." if done else "A person is already on it.")
            done = await self.desk.resolve(cid, await self.quick_name(user), close=verb == "close")
        except ConversationNotFound:
            return _ephemeral(f"No conversation {cid!r}.")
        return _ephemeral("Done." if done else "No person was on that conversation.")

    async def on_action(self, payload: dict[str, Any]) -> None:
        """A button of a handoff thread (only the support channel's count)."""
        if not self.support or (payload.get("channel") or {}).get("id") != self.support:
            return
        user = (payload.get("user") or {}).get("id", "")
        for action in payload.get("actions") or []:
            if action.get("action_id") in (RESOLVE, CLOSE) and action.get("value"):
                name = await self.quick_name(user)
                close = action["action_id"] == CLOSE
                try:
                    await self.desk.resolve(str(action["value"]), name, close=close)
                except ConversationNotFound:
                    log.info("slack: button for an expired conversation")

    # --- jobs ---------------------------------------------------------------------------

    async def _turn(self, job: Job) -> None:
        p = job.payload
        inbound = InboundMessage(p["text"], "slack", p["conversation"], p["key"], p.get("user"))
        key = f"turn:{p['key']}"
        head = f"<@{p['asked_by']}> asked: {escape(p['text'])}\n\n" if p.get("asked_by") else ""
        stream = _Stream(self, p["channel"], p["thread_ts"], key, head)
        final: Message | None = None
        try:
            async with aclosing(self.manager.respond(inbound)) as events:
                async for event in events:
                    if isinstance(event, Token):
                        await stream.add(event.text)
                    elif isinstance(event, Notice) and event.code == "answer_withdrawn":
                        stream.withdraw()
                    elif isinstance(event, Message):
                        final = event
        except LeaseLost as exc:  # paused past its lease: another process answers it
            log.warning("%s", exc.message)
            return
        except ConversationNotFound as exc:
            raise GiveUp(exc.message) from None
        except (StoreUnavailable, Busy) as exc:
            raise RetryLater(backoff(job.attempt, 2.0, 60.0), exc.message) from None
        except BadRequest as exc:  # e.g. too long: say so in the thread
            await self.post(p["channel"], p["thread_ts"], escape(exc.message), f"turn:{job.id}")
            return
        if final is None:
            return  # a person handles this conversation: relayed to them
        text = to_mrkdwn(final.text)
        if final.handoff and self.desk.console:
            text += "\n\n" + escape(self.manager.handoff_text("slack"))
        base = self.settings.public_url
        line = sources(final.citations, lambda source: _link(source, base, self.settings))
        if line:
            text += "\n\n" + line
        ts = await self.post(
            p["channel"], p["thread_ts"], head + text, key, edit_first=True, first_ts=stream.ts
        )
        if p.get("asked_by") and ts:  # replies in the answer's thread continue it
            thread_key = f"slack:conv:{p.get('team', '')}:{p['channel']}:{ts}"
            await self.kv.put(thread_key, p["conversation"], self._ttl)
            await self.manager.store.set_meta(p["conversation"], {"slack_thread": ts})

    async def post(
        self,
        channel: str,
        thread: str | None,
        text: str,
        key: str,
        *,
        edit_first: bool = False,
        first_ts: str | None = None,
    ) -> str | None:
        """Post `text` (split as needed) once per `key`; the first piece's ts.

        `edit_first`: the first piece may have been posted already while the answer streamed
        (`first_ts`, or by a run that died): it is edited to its final text rather than posted
        again."""
        first = None
        for i, piece in enumerate(split(text, self.settings.slack.max_message_chars)):
            mark = f"slack:posted:{key}:{i}"
            ts = (first_ts if i == 0 else None) or await self.kv.get(mark)
            if ts is None:
                sent = await self._call(
                    "chat.postMessage",
                    channel=channel,
                    thread_ts=thread,
                    text=piece,
                    unfurl_links=False,
                    unfurl_media=False,
                )
                ts = str(sent.get("ts", ""))
                await self.kv.put(mark, ts, POSTED_TTL_S)
            elif i == 0 and edit_first:
                await self._call("chat.update", channel=channel, ts=ts, text=piece)
            first = first or ts
        return first

    async def _call(self, method: str, **payload: Any) -> dict[str, Any]:
        """A Web API call whose failure the job queue understands."""
        try:
            return await self.api.call(method, **payload)
        except RateLimited as exc:
            raise RetryLater(exc.retry_after, str(exc)) from None
        except httpx.HTTPError as exc:
            raise RetryLater(5.0, f"slack unreachable: {exc}") from None
        except SlackApiError as exc:
            raise GiveUp(str(exc)) from None

    async def _post_job(self, job: Job) -> None:
        p = job.payload
        sealer = self.desk.sealer
        text = (sealer.open(p.get("sealed")) if sealer is not None else None) or p["text"]
        await self.post(p["channel"], p.get("thread_ts"), text, f"job:{job.id}")

    async def _agent(self, job: Job) -> None:
        p = job.payload
        name = await self.user_name(p["user"])
        turn = await self.desk.agent_says(
            p["conversation"], name, p["text"], key=p["key"], sealed=p.get("sealed")
        )
        if turn is None:
            await self._note_job(
                p["conversation"],
                "The assistant has this conversation again; "
                "that message was not sent. Use /switchboard handoff to take it.",
                f"stale:{job.id}",
            )

    # --- the agents' console -------------------------------------------------------------

    async def _thread(self, cid: str) -> str | None:
        session = await self.manager.session(cid)
        return session.meta.get("agent_thread") or None

    async def _open(self, job: Job) -> None:
        """Open (or reopen) the handoff's thread: header with buttons, summary, transcript."""
        assert self.support is not None
        cid, reason = job.payload["conversation"], job.payload["reason"]
        session = await self.manager.session(cid)
        thread = session.meta.get("agent_thread")
        if not thread:
            header = (
                f"*A customer needs a person* ({escape(session.channel)}): {escape(reason)}\n"
                f"Reply in this thread to answer them. Conversation `{cid}`"
            )
            blocks = [
                {"type": "section", "text": {"type": "mrkdwn", "text": header}},
                {
                    "type": "actions",
                    "elements": [
                        _button("Resolve", RESOLVE, cid, "primary"),
                        _button("Close", CLOSE, cid, None),
                    ],
                },
            ]
            try:
                root = await self._call(
                    "chat.postMessage", channel=self.support, text=header, blocks=blocks
                )
            except GiveUp as exc:  # e.g. not_in_channel: nobody would see it
                await self.manager.store.set_status(cid, "bot", ("pending_human",))
                log.error("slack: cannot open a handoff thread (%s); the bot answers again", exc)
                raise
            thread = str(root["ts"])
            await self.manager.store.set_meta(cid, {"agent_thread": thread})
            await self.kv.put(f"slack:handoff:{self.support}:{thread}", cid, self._ttl)
        else:
            await self.kv.put(f"slack:handoff:{self.support}:{thread}", cid, self._ttl)
        turns = await self.manager.store.history(cid)
        users = [t.text for t in turns if t.role == "user"]
        summary = f"*Summary:* {len(turns)} messages on {escape(session.channel)}; why: " + escape(
            reason
        )
        if users:
            summary += f"\n*First question:* {escape(users[0][:300])}"
            summary += f"\n*Last message:* {escape(users[-1][:300])}"
        lines = [summary, "*Transcript:*"]
        for turn in turns:
            who = "Customer" if turn.role == "user" else (turn.author or "Bot")
            lines.append(f"*{escape(who)}:* {escape(await self._reveal(cid, turn.text))}")
        await self.post(self.support, thread, "\n".join(lines), f"open:{job.id}")

    async def _reveal(self, cid: str, text: str) -> str:
        """The text with the conversation's pseudonyms revealed, where the policy allows."""
        try:
            return await self.manager.policies.reveal(cid, text)
        except (PermissionError, SwitchboardError):
            return text

    async def _relay(self, job: Job) -> None:
        p = job.payload
        thread = await self._thread(p["conversation"])
        if thread is None:  # the thread is not posted yet: after it
            raise RetryLater(2.0, "the handoff thread is not open yet")
        text = "*Customer:* " + escape(await self._reveal(p["conversation"], p["text"]))
        assert self.support is not None
        await self.post(self.support, thread, text, f"relay:{p['message_id']}")

    async def _note(self, job: Job) -> None:
        await self._note_job(job.payload["conversation"], job.payload["text"], f"note:{job.id}")

    async def _note_job(self, cid: str, text: str, key: str) -> None:
        thread = await self._thread(cid)
        if thread is not None and self.support is not None:
            await self.post(self.support, thread, "_" + escape(text) + "_", key)

    # --- customers on Slack --------------------------------------------------------------

    async def _deliver(self, session: Any, frame: dict[str, Any], once: str | None) -> None:
        """An agent's message (or a handoff change) to a customer in their Slack thread."""
        messages = self.manager.policies.messages("slack")
        kind = frame.get("type")
        sealed = ""
        if kind == "message":
            author = f"*{escape(frame.get('author') or 'Agent')}:* "
            text = author + to_mrkdwn(frame["text"])
            words = unsealed(frame, self.desk.sealer)["text"]
            if self.desk.sealer is not None and words != frame["text"]:
                # The agent's words as written, for this customer only: sealed in the queue.
                sealed = self.desk.sealer.seal(author + to_mrkdwn(words))
        elif kind == "agent":
            name = frame.get("name") or "An agent"
            state = frame["state"]
            text = (
                messages.agent_joined.format(name=name)
                if state == "human"
                else messages.closed
                if state == "closed"
                else messages.bot_back
            )
            text = escape(text)
        else:
            text = escape(str(frame.get("text") or ""))
        if text:
            job = {
                "channel": session.meta.get("slack_channel"),
                "thread_ts": session.meta.get("slack_thread") or None,
                "text": text,
            }
            if sealed:
                job["sealed"] = sealed
            await self.queue.put("slack.post", job, once=once)


def _user_id(team: str, user: str) -> str:
    return f"slack:{team}:{user}"


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": text}


def _button(label: str, action: str, value: str, style: str | None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _link(source: str, base: str | None, settings: Settings) -> str | None:
    """A citation's absolute URL: its own, or the public URL's article path."""
    if source.startswith(("http://", "https://")):
        return source
    article = settings.web.article_base_url
    if article is None:
        return None
    if article.startswith(("http://", "https://")):
        return citation_url(source, article)
    return None if base is None else citation_url(source, base.rstrip("/") + article)


# --- routes --------------------------------------------------------------------------------


def _slack(request: Request) -> SlackChannel | None:
    channel: SlackChannel | None = getattr(request.app.state, "slack", None)
    return channel


def _fail(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status)


async def _verified(request: Request) -> tuple[SlackChannel, bytes] | JSONResponse:
    slack = _slack(request)
    if slack is None:
        return _fail(
            404,
            "slack_disabled",
            "Slack is off: set SWITCHBOARD_SLACK__SIGNING_SECRET and SWITCHBOARD_SLACK__BOT_TOKEN",
        )
    body = await request.body()
    try:
        slack.verify(request.headers, body)
    except InvalidSignature as exc:
        log.warning("slack: request refused: %s", exc)
        return _fail(401, "bad_signature", str(exc))
    return slack, body


@router.post(
    "/events",
    responses={
        401: {"description": "not signed by Slack"},
        404: {"description": "Slack is not configured on this server"},
    },
)
async def slack_events(request: Request) -> Response:
    """Slack's Events API (`url_verification`, `event_callback`): acknowledged at once."""
    checked = await _verified(request)
    if isinstance(checked, JSONResponse):
        return checked
    slack, body = checked
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        return _fail(400, "bad_json", f"the body is not a JSON object: {exc}")
    if payload.get("type") == "url_verification":
        return JSONResponse({"challenge": payload.get("challenge")})
    if payload.get("type") == "event_callback":
        try:
            await slack.on_event(payload)
        except StoreUnavailable as exc:  # not kept: let Slack retry
            return _fail(503, exc.code, exc.message)
    return Response(status_code=200)


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


@router.post(
    "/commands",
    responses={
        401: {"description": "not signed by Slack"},
        404: {"description": "Slack is not configured on this server"},
    },
)
async def slack_commands(request: Request) -> Response:
    """Slash commands: `/ask QUESTION`, `/switchboard resolve|close|handoff ID`."""
    checked = await _verified(request)
    if isinstance(checked, JSONResponse):
        return checked
    slack, body = checked
    try:
        return JSONResponse(await slack.on_command(_form(body)))
    except StoreUnavailable as exc:
        return JSONResponse(_ephemeral(f"Sorry, try again in a moment ({exc.code})."))


@router.post(
    "/interactions",
    responses={
        401: {"description": "not signed by Slack"},
        404: {"description": "Slack is not configured on this server"},
    },
)
async def slack_interactions(request: Request) -> Response:
    """Block actions: the Resolve and Close buttons of handoff threads."""
    checked = await _verified(request)
    if isinstance(checked, JSONResponse):
        return checked
    slack, body = checked
    try:
        payload = json.loads(_form(body).get("payload", ""))
    except ValueError:
        return _fail(400, "bad_payload", "expected a form field 'payload' with JSON")
    if isinstance(payload, dict) and payload.get("type") == "block_actions":
        try:
            await slack.on_action(payload)
        except StoreUnavailable as exc:
            return _fail(503, exc.code, exc.message)
    return Response(status_code=200)


class _Stream:
    """An answer shown while it is written: posted after its first words, then edited at
    most every `stream_interval_s` (Slack allows about one edit a second per message). A
    failed edit is skipped: the final text is set when the answer is complete."""

    def __init__(
        self, slack: SlackChannel, channel: str, thread: str | None, key: str, head: str
    ) -> None:
        self.slack = slack
        self.channel = channel
        self.thread = thread
        self.mark = f"slack:posted:{key}:0"
        self.head = head
        self.text = ""
        self.ts: str | None = None
        self.shown = ""
        self.last = 0.0

    async def add(self, piece: str) -> None:
        settings = self.slack.settings.slack
        self.text += piece
        now = time.monotonic()
        if not settings.stream or now - self.last < settings.stream_interval_s:
            return
        self.last = now
        limit = settings.max_message_chars - 2
        shown = (self.head + to_mrkdwn(self.text))[:limit].rstrip()
        # Never a half-open link or a cut "<" in an edit: show up to the last whole word.
        if shown.rfind("<") > shown.rfind(">"):
            shown = shown[: shown.rfind("<")].rstrip()
        if not shown or shown == self.shown:
            return
        try:
            if self.ts is None:
                self.ts = await self.slack.kv.get(self.mark)  # a run before this one posted
            if self.ts is None:
                sent = await self.slack.api.call(
                    "chat.postMessage",
                    channel=self.channel,
                    thread_ts=self.thread,
                    text=shown + " …",
                    unfurl_links=False,
                    unfurl_media=False,
                )
                self.ts = str(sent["ts"])
                await self.slack.kv.put(self.mark, self.ts, POSTED_TTL_S)
            else:
                await self.slack.api.call(
                    "chat.update", channel=self.channel, ts=self.ts, text=shown + " …"
                )
            self.shown = shown
        except (RateLimited, SlackApiError, httpx.HTTPError, KeyError, StoreUnavailable) as exc:
            # Skipped; the message's ts, if it was posted, is kept here for the final edit.
            log.info("slack: a streaming edit was skipped: %s", exc)

    def withdraw(self) -> None:
        """A policy withdrew what was shown: the final edit replaces it (nothing new until)."""
        self.text = ""
        self.last = float("inf")
