"""The application factory: `create_app(settings)` builds the ASGI app; nothing loads at import.

`build_app()` lays out routes; the lifespan wires state (`Components`) and warms it up.
Tests may pass ready-made `components` (e.g. with a scripted model) to the factory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from bot import __version__
from bot.admin import MAX_DOCUMENT_BYTES, document_name_pattern
from bot.admin import router as admin_router
from bot.api import router as api_router
from bot.components import Components, build_components
from bot.errors import SwitchboardError, Unavailable
from bot.handoff import HandoffDesk, Sealer
from bot.jobs import JobQueue, MemoryJobQueue, RedisJobQueue
from bot.limits import BodyLimit
from bot.observability import LIVE, RequestIdMiddleware, setup_tracing, shutdown_tracing
from bot.sessions import RedisSessionStore
from bot.settings import Settings
from connectors.kv import KeyValue
from connectors.slack.channel import SlackChannel
from connectors.slack.channel import router as slack_router
from connectors.web import router as web_router
from connectors.web.router import WebChannel
from connectors.webhook.channel import WebhookChannels
from connectors.webhook.channel import router as webhook_router

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, components: Components | None = None) -> FastAPI:
    """The Switchboard API, the web channel and the demo page, for `settings`."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts = components or build_components(settings)
        app.state.components = parts
        tracing = setup_tracing(settings.otel_endpoint, settings.otel_service_name)
        try:
            await parts.start()
        except SwitchboardError as exc:
            log.error("start-up failed: %s", exc.message)
            raise
        app.state.manager = parts.manager
        LIVE.watch(parts)
        queue, reader = await open_queue(settings, parts)
        desk = HandoffDesk(parts.manager, queue, Sealer.from_settings(settings))
        parts.manager.desk = desk
        kv = KeyValue(getattr(parts.store, "client", None), settings.key_prefix)
        app.state.queue, app.state.desk = queue, desk
        app.state.web = await WebChannel.start(parts, desk)
        app.state.slack = (
            SlackChannel(settings, parts.manager, desk, queue, kv)
            if settings.slack.enabled
            else None
        )
        app.state.webhooks = WebhookChannels(settings, parts.manager, desk, queue, kv)
        if app.state.slack is not None:
            await app.state.slack.start()
        await queue.start()
        try:
            yield
        finally:
            await queue.close()
            if app.state.slack is not None:
                await app.state.slack.close()
            await app.state.webhooks.close()
            await app.state.web.close()
            if reader is not None:
                await reader.aclose()
            await parts.close()
            if tracing:
                shutdown_tracing()

    app = FastAPI(
        title="Switchboard",
        version=__version__,
        description="Customer-service chatbot: grounded answers from a local LLM, PII-safe.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(api_router)
    app.include_router(web_router)
    app.include_router(admin_router)
    app.include_router(slack_router)
    app.include_router(webhook_router)

    def openapi() -> dict[str, Any]:
        # The document states this server's own limits, which settings decide.
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            text = document["components"]["schemas"]["MessageIn"]["properties"]["text"]
            text["maxLength"] = settings.max_message_chars
            for operation in document["paths"]["/admin/documents/{name}"].values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "name":
                        parameter["schema"]["pattern"] = document_name_pattern()
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(
        BodyLimit, limit=settings.max_request_bytes, upload_limit=MAX_DOCUMENT_BYTES + 64 * 1024
    )
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # What was wrong, never the input itself: it may be personal data, NaN or a lone
        # surrogate (which no JSON response can carry).
        problems = [
            {"loc": [str(p) for p in e["loc"]], "msg": str(e["msg"]), "type": str(e["type"])}
            for e in exc.errors()
        ]
        message = (
            "; ".join(f"{'.'.join(p['loc'][1:]) or 'body'}: {p['msg']}" for p in problems)
            .encode("utf-8", "backslashreplace")
            .decode()
        )
        return JSONResponse(
            {"error": {"code": "invalid_request", "message": message}, "detail": problems},
            status_code=422,
        )

    @app.exception_handler(SwitchboardError)
    async def _fault(request: Request, exc: SwitchboardError) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message, **exc.extra}},
            status_code=exc.http_status,
            headers={"Retry-After": "2"} if isinstance(exc, Unavailable) else None,
        )

    return app


async def open_queue(settings: Settings, parts: Components) -> tuple[JobQueue, Any]:
    """The job queue: in Redis beside the conversations, else in this process's memory."""
    jobs = settings.jobs
    if isinstance(parts.store, RedisSessionStore) and settings.redis_url is not None:
        from redis.asyncio import Redis

        # The worker's blocking reads wait on a connection of their own.
        reader = Redis.from_url(
            settings.redis_url.get_secret_value(),
            decode_responses=True,
            socket_connect_timeout=3,
            socket_timeout=10,
        )
        queue = RedisJobQueue(
            parts.store.client,
            reader,
            settings.key_prefix,
            claim_idle_s=jobs.claim_idle_s,
            concurrency=jobs.concurrency,
        )
        return queue, reader
    return MemoryJobQueue(jobs.concurrency), None
