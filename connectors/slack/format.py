"""Answers as Slack messages: markdown to mrkdwn, citations as links, sensible splits."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from bot.types import Citation

_LINK = re.compile(r"!?\[([^\]\n]*)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_HEADING = re.compile(r"^#{1,6}\s+(.+)$", re.MULTILINE)
_SLACK_LINK = re.compile(r"<[^<>]*>")
_SAFE_URL = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)


def escape(text: str) -> str:
    """Slack's three control characters, escaped (user text can't ping @channel)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """The answer's markdown in Slack's mrkdwn: **bold** -> *bold*, [t](u) -> <u|t>,
    headings -> bold lines; everything else escaped. Links other than http(s)/mailto stay
    text."""
    links: list[str] = []

    def hold(match: re.Match[str]) -> str:
        title, url = match.group(1), match.group(2)
        if not _SAFE_URL.match(url):
            return match.group(0)
        label = escape(title or url).replace("|", "¦")
        links.append(f"<{escape(url).replace('|', '%7C')}|{label}>")
        return f"\x00{len(links) - 1}\x00"

    text = escape(_LINK.sub(hold, markdown))
    text = _HEADING.sub(lambda m: "*" + _BOLD.sub(r"\1\2", m.group(1)).strip() + "*", text)
    text = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)
    return re.sub("\x00(\\d+)\x00", lambda m: links[int(m.group(1))], text)


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
    sentence, then word boundaries; never inside a `<url|title>` link shorter than `limit`."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut(rest, limit)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return [piece for piece in pieces if piece]


_BOUNDARIES = (("\n\n",), ("\n",), (". ", "? ", "! "), (" ",))


def _cut(text: str, limit: int) -> int:
    """Where to end the first piece of `text` (longer than `limit`)."""
    window = text[:limit]
    opened = window.rfind("<")
    if opened > window.rfind(">"):  # a link crosses the limit: end before it
        if opened == 0:
            end = text.find(">")
            return end + 1 if 0 < end < limit else limit  # a link too long to keep whole
        window = window[:opened]
    links = [m.span() for m in _SLACK_LINK.finditer(window)]

    def outside(i: int) -> bool:
        return not any(start < i < end for start, end in links)

    fallback = 0
    for group in _BOUNDARIES:
        at = 0
        for boundary in group:
            i = window.rfind(boundary)
            while i > 0 and not outside(i):
                i = window.rfind(boundary, 0, i)
            if i > 0:
                at = max(at, i + len(boundary))
        if at > limit // 3:
            return at
        fallback = max(fallback, at)
    if fallback:
        return fallback
    if links and links[0][0] == 0:  # nothing to cut at but a link first: keep it whole
        return links[0][1]
    return len(window) or limit
