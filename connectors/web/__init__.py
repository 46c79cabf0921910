"""The web channel: the chat websocket and the demo page."""

from connectors.web.router import router

__all__ = ["router"]
