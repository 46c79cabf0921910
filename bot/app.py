"""The application factory: `create_app(settings)` builds the ASGI app; nothing loads at import.

`build_app()` lays out routes; the lifespan wires state (`Components`) and warms it up.
Tests may pass ready-made `components` (e.g. with a scripted model) to the factory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bot import __version__
from bot.admin import router as admin_router
from bot.api import router as api_router
from bot.components import Components, build_components
from bot.errors import SwitchboardError
from bot.settings import Settings
from connectors.web import router as web_router
from connectors.web.router import WebChannel

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, components: Components | None = None) -> FastAPI:
    """The Switchboard API, the web channel and the demo page, for `settings`."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts = components or build_components(settings)
        app.state.components = parts
        try:
            await parts.start()
        except SwitchboardError as exc:
            log.error("start-up failed: %s", exc.message)
            raise
        app.state.manager = parts.manager
        app.state.web = await WebChannel.start(parts)
        try:
            yield
        finally:
            await app.state.web.close()
            await parts.close()

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

    @app.exception_handler(SwitchboardError)
    async def _fault(request: Request, exc: SwitchboardError) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message}}, status_code=exc.http_status
        )

    return app
