"""Answers as Slack messages: markdown to mrkdwn, citations as links, sensible splits."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from bot.types import Citation

_LINK = re.compile(r"!?\[([^\]\n]*)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_HEADING = re.compile(r"^#{1,6}\s+(.+)$", re.MULTILINE)
_SAFE_URL = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)


def escape(text: str) -> str:
    """Slack's three control characters, escaped (user text can't ping @channel)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """The answer's markdown in Slack's mrkdwn: **bold** -> *bold*, [t](u) -> <u|t>,
    headings -> bold lines; everything else escaped. Links other than http(s)/mailto stay
    text."""
    out, last = [], 0
    for match in _LINK.finditer(markdown):
        out.append(_inline(markdown[last : match.start()]))
        title, url = match.group(1), match.group(2)
        if _SAFE_URL.match(url):
            label = escape(title or url).replace("|", "¦")
            out.append(f"<{escape(url)}|{label}>")
        else:
            out.append(_inline(match.group(0)))
        last = match.end()
    out.append(_inline(markdown[last:]))
    return "".join(out)


def _inline(text: str) -> str:
    text = escape(text)
    text = _HEADING.sub(lambda m: f"*{m.group(1).strip()}*", text)
    return _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)


def sources(citations: Sequence[Citation], link: Callable[[str], str | None]) -> str:
    """A "Sources:" line; `link(source)` gives a citation's URL or None."""
    items = []
    for citation in citations:
        url = link(citation.source)
        title = escape(citation.title or citation.source).replace("|", "¦")
        items.append(f"<{escape(url)}|{title}>" if url else title)
    return "Sources: " + " · ".join(items) if items else ""


def split(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at paragraph, then line, then
    sentence, then word boundaries; never inside a `<url|title>` link."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = -1
        for boundary in ("\n\n", "\n", ". ", "? ", "! ", " "):
            at = window.rfind(boundary)
            if at > limit // 3:
                cut = at + len(boundary.rstrip(" ")) if boundary.strip() else at
                break
        if cut <= 0:
            cut = limit
        opened = window.rfind("<", 0, cut)
        if opened > window.rfind(">", 0, cut) and opened > 0:  # don't break a link
            cut = opened
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces
