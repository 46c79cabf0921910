"""FAQ articles as (question, answer) pairs: what `finetune export` learns from the KB."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.llm.finetune.export import faq_files, faq_pairs

NESTED = """\
# Returns

Returns are free within 30 days.

## Can I return a sale item?

Yes, sale items can be returned like any other item.

### How do I print the label?

Open **Orders** and choose *Print label*.

## Shipping times

Three to five days.

#### **Do you ship to `Canada`?** ####

Yes, see [our shipping page](https://northwind.example/shipping).
"""


def test_question_headings_at_every_level_become_pairs_when_they_end_with_a_question_mark() -> None:
    assert faq_pairs(NESTED) == [
        (
            "Can I return a sale item?",
            "Yes, sale items can be returned like any other item.\n\n"
            "### How do I print the label?\n\n"
            "Open **Orders** and choose *Print label*.",
        ),
        ("How do I print the label?", "Open **Orders** and choose *Print label*."),
        (
            "Do you ship to Canada?",
            "Yes, see [our shipping page](https://northwind.example/shipping).",
        ),
    ]


def test_section_ends_at_a_heading_of_the_same_or_higher_level_when_nested() -> None:
    text = "## Why?\nBecause.\n# Top\nNot part of it.\n"
    assert faq_pairs(text) == [("Why?", "Because.")]
    text = "### Why?\nBecause.\n## Up a level\nNot part of it.\n"
    assert faq_pairs(text) == [("Why?", "Because.")]


@pytest.mark.parametrize(
    "text",
    [
        "# Returns\n\nReturns are free.\n",  # no question
        "## Is this empty?\n\n## Next?\n",  # empty bodies (the second one too)
        "#Not a heading?\nbody\n",  # no space after the hashes
        "Plain text that asks a question?\nand goes on.\n",
        "```\n# inside a code block?\nprint()\n```\n",
        "---\n# a YAML comment?\ntitle: x\n---\nBody.\n",
        "Q: a question without an answer\n\nSome text.\n",
        "",
    ],
)
def test_no_pairs_when_there_is_no_question_with_an_answer(text: str) -> None:
    assert faq_pairs(text) == []


def test_code_block_stays_in_the_answer_when_it_holds_hash_lines() -> None:
    text = "## How do I call the API?\n\n```sh\n# the token?\ncurl -H x\n```\n\nDone.\n"
    assert faq_pairs(text) == [
        ("How do I call the API?", "```sh\n# the token?\ncurl -H x\n```\n\nDone.")
    ]


def test_q_and_a_blocks_become_pairs_when_answers_span_lines() -> None:
    text = """\
Q: How long does a refund take?
A: Five business days
after we receive the parcel.

Q: Can I pay with
**PayPal**?
A: Yes.

Q: Do you ship to the moon?
"""
    assert faq_pairs(text) == [
        ("How long does a refund take?", "Five business days\nafter we receive the parcel."),
        ("Can I pay with PayPal?", "Yes."),
    ]


def test_answer_stops_at_a_heading_when_q_and_a_are_in_markdown() -> None:
    text = """\
# Billing

Q: Where is my invoice?
A: In your account.

## Is VAT included?

Always.
"""
    assert faq_pairs(text) == [
        ("Where is my invoice?", "In your account."),
        ("Is VAT included?", "Always."),
    ]


def test_faq_files_walks_folders_in_sorted_order_when_given_folders_and_files(
    tmp_path: Path,
) -> None:
    (tmp_path / "kb" / "b").mkdir(parents=True)
    for name in ("kb/b/z.md", "kb/a.txt", "kb/c.pdf", "kb/b/a.MD", "single.md"):
        (tmp_path / name).write_text("x")
    found = faq_files([tmp_path / "kb", tmp_path / "single.md"])
    assert [name for _, name in found] == ["a.txt", "b/a.MD", "b/z.md", "single.md"]


@pytest.mark.parametrize("name", ["missing", "manual.pdf"])
def test_faq_files_refuses_when_a_path_is_missing_or_not_text(tmp_path: Path, name: str) -> None:
    (tmp_path / "manual.pdf").write_bytes(b"%PDF")
    with pytest.raises(ConfigError):
        faq_files([tmp_path / name])
