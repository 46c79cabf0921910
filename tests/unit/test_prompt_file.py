"""The prompt file: the bundled default renders the prompt Switchboard always used; bad files
are refused with the line and the reason; examples, formats and wording take effect."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.llm.base import ChatMessage
from bot.prompt import build_prompt
from bot.prompt_file import PromptFileError, default_prompt_path, load_prompt, parse_prompt
from bot.types import Citation, Passage

# The default system prompt, written out: the default file must render exactly this. It
# speaks of the customer as "you" (a small model copied "the customer" into its answers),
# and mentions privacy labels only when the conversation has one (it parroted the example).
LEGACY = """\
You are the customer-support assistant of {company}, chatting with a customer. Answer their \
question using only the help-center articles below, speaking to them as "you". Answer the \
question in your first sentence. Be brief, friendly and specific: copy numbers, prices, \
time limits and menu names exactly as the article that answers the question writes them, \
and never take a number from an article about something else. If the articles do not \
contain the answer, say that you don't know and offer to connect them with a person. Never \
invent policies, prices or links.

Help-center articles:
{passages}"""

PASSAGES = [
    Passage("You have 30 days.\n", Citation("Returns policy", "returns.md"), 0.9),
    Passage("Refunds take 5 business days.", Citation("Refunds", "refunds.md"), 0.8),
]


def _words(messages: list[ChatMessage]) -> int:
    return sum(len(m.content.split()) for m in messages)


def _legacy(passages: list[Passage]) -> str:
    blocks = [f"[{i}] {p.citation.title}\n{p.text.strip()}" for i, p in enumerate(passages, 1)]
    text = "\n\n".join(blocks) or "(No relevant article was found.)"
    return LEGACY.format(company="ACME", passages=text)


@pytest.mark.parametrize("passages", [[], PASSAGES[:1], PASSAGES])
def test_the_default_file_renders_the_legacy_prompt(passages: list[Passage]) -> None:
    prompt = build_prompt(
        company="ACME", question="q", passages=passages, history=[], budget=9999,
        count_tokens=_words,
    )  # fmt: skip
    assert prompt.messages[0].content == _legacy(passages)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "prompt.yaml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """\
version: 1
company: Northwind
persona: "the friendly helper of {company}"
tone: "Keep it warm."
languages: [English, Spanish]
rules:
  cite_sources: true
  max_sentences: 3
formats:
  default: "Use markdown."
  sms: "Plain text only."
examples:
  - user: "Hi"
    assistant: "Hello! How can I help?"
wording:
  no_answer: "No idea, sorry! Want a person?"
system: |
  You are {{ persona }}. {{ tone }}{% if rules.max_sentences %} At most
  {{- " " ~ rules.max_sentences }} sentences.{% endif %}
  {{ format }} Languages: {{ languages | join(", ") }}. Channel: {{ channel }}.
  {% if summary %}Summary: {{ summary }}{% endif %}
  {% for p in passages %}[{{ p.rank }}] {{ p.title }} ({{ p.source }}): {{ p.text }}
  {% endfor %}
"""


def test_a_full_file_renders_every_part(tmp_path: Path) -> None:
    prompts = load_prompt(write(tmp_path, GOOD), "ignored")
    prompt = build_prompt(
        prompts=prompts, channel="sms", summary="asked about returns", question="refund?",
        passages=PASSAGES, history=[], budget=9999, count_tokens=_words,
    )  # fmt: skip
    system = prompt.messages[0].content
    assert system.startswith("You are the friendly helper of Northwind. Keep it warm. At most 3")
    assert "Plain text only." in system and "Channel: sms." in system
    assert "Languages: English, Spanish." in system and "Summary: asked about returns" in system
    assert "[2] Refunds (refunds.md): Refunds take 5 business days." in system
    assert [(m.role, m.content) for m in prompt.messages[1:]] == [
        ("user", "Hi"),
        ("assistant", "Hello! How can I help?"),
        ("user", "refund?"),
    ]
    web = prompts.system("web", [])
    assert "Use markdown." in web and "Plain text only." not in web
    assert prompts.config.wording.no_answer == "No idea, sorry! Want a person?"


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (("version: 1\n", ""), 1, "version: missing required key"),
        (("  max_sentences: 3", "  max_sentences: three"), 8, "rules.max_sentences: "),
        (("tone:", "tones:"), 4, "tones: unknown key"),
        (('  - user: "Hi"\n', '  - usr: "Hi"\n'), 13, "examples[0].usr: unknown key"),
        (("Channel: {{ channel }}.", "Channel: {{ chanel }}."), 20, "unknown variable 'chanel'"),
        (("{% endfor %}", "{% endfr %}"), 23, "template syntax"),
        (("{{ p.text }}", "{{ p.text | nosuchfilter }}"), 22, "template syntax"),
    ],
)
def test_a_bad_file_is_refused_with_the_line(
    tmp_path: Path, change: tuple[str, str], line: int, reason: str
) -> None:
    assert change[0] in GOOD
    path = write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(PromptFileError) as caught:
        load_prompt(path, "ACME")
    assert f"{path}:{line}: " in caught.value.message, caught.value.message
    assert reason in caught.value.message


def test_unknown_variables_name_the_ones_allowed(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError) as caught:
        parse_prompt("version: 1\nsystem: 'Hi {{ customer_name }}'\n", "p.yaml", "ACME")
    assert "p.yaml:2: system: unknown variable 'customer_name'" in caught.value.message
    assert "company, summary" not in caught.value.message  # listed sorted, whole
    assert "channel, company, format" in caught.value.message


def test_the_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    text = "version: 1\nsystem: '{{ company.__class__.__mro__ }}'\n"
    with pytest.raises(PromptFileError, match="cannot be rendered"):
        parse_prompt(text, "p.yaml", "ACME")


def test_the_bundled_default_validates() -> None:
    prompts = load_prompt(default_prompt_path(), "ACME")
    assert prompts.config.formats["slack"].startswith("Format the answer for Slack")
    assert "Slack" in prompts.system("slack", []) and "Slack" not in prompts.system("web", [])


async def test_the_prompt_file_reloads_and_a_bad_change_keeps_the_old_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    from contextlib import aclosing

    from bot.components import Components
    from bot.llm.base import ScriptedModel
    from bot.sessions import InMemorySessionStore
    from bot.settings import Settings
    from bot.types import InboundMessage
    from policies.engine import PolicyEngine
    from policies.pii import PatternRedactor
    from policies.schema import default_policy_path, load_policy
    from tests.support import FixedRetriever

    path = tmp_path / "prompt.yaml"
    path.write_text("version: 1\nsystem: 'You are Ada of {{ company }}.'\n")
    settings = Settings(prompt_file=path, policy_reload_s=0.05, company_name="ACME")
    model = ScriptedModel([["Hi."]] * 3)
    parts = Components(
        settings=settings,
        store=InMemorySessionStore(settings.sessions),
        policies=PolicyEngine(load_policy(default_policy_path()), PatternRedactor()),
        retriever=FixedRetriever(list(PASSAGES)),
        llm=model,
    )
    await parts.start()

    async def ask() -> str:
        message = InboundMessage("How long do I have?", "web")
        async with aclosing(parts.manager.respond(message)) as events:
            [_ async for _ in events]
        return model.prompts[-1][0].content

    async def until(check: object, what: str) -> None:
        for _ in range(100):
            if callable(check) and check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(what)

    def save(text: str) -> None:  # as editors do: a whole new file renamed into place
        (tmp_path / "new.yaml").write_text(text)
        (tmp_path / "new.yaml").replace(path)

    try:
        assert await ask() == "You are Ada of ACME."
        save("version: 1\nsystem: 'You are Bo of {{ company }}.'\n")
        await until(lambda: "Bo" in parts.manager.prompts.system("web", []), "no reload")
        assert await ask() == "You are Bo of ACME."
        save("version: 1\nsystem: 'You are {{ nobody }}.'\n")
        await until(lambda: "prompt file refused" in caplog.text, "the bad file was not refused")
        assert "unknown variable 'nobody'" in caplog.text
        assert await ask() == "You are Bo of ACME."  # the old one keeps serving
    finally:
        await parts.close()
