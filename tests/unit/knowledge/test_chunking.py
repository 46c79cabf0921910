from __future__ import annotations

import itertools
import re

import pytest

from knowledge.chunking import chunk_document
from knowledge.loaders import Document

LOREM = (
    "Refunds go back to the original payment method. Store credit is issued instantly. "
    "Bank transfers can take longer! Does the card issuer matter? Sometimes it does. "
)


def doc(text: str, source: str = "returns.md", title: str = "Returns policy") -> Document:
    return Document(id="d" * 16, title=title, source=source, text=text)


def test_heading_path_and_context_line_kept_when_markdown_has_sections() -> None:
    text = (
        "# Returns policy\n\nIntro.\n\n## Refund timing\n\nWithin 30 days.\n\n"
        "### Exceptions\n\nSale items.\n\n## Exchanges\n\nFree.\n"
    )
    chunks = chunk_document(doc(text))
    assert [c.heading for c in chunks] == [
        "Returns policy",
        "Returns policy > Refund timing",
        "Returns policy > Refund timing > Exceptions",
        "Returns policy > Exchanges",
    ]
    assert chunks[1].text == "Returns policy — Refund timing\n\nWithin 30 days."
    assert chunks[2].text.startswith("Returns policy — Refund timing — Exceptions\n\n")
    assert chunks[0].text == "Returns policy\n\nIntro."


def test_heading_only_sections_yield_no_chunks_when_they_have_no_body() -> None:
    chunks = chunk_document(doc("# Returns policy\n## Refund timing\n\nWithin 30 days.\n"))
    assert [c.heading for c in chunks] == ["Returns policy > Refund timing"]


def test_hashes_in_code_fences_are_not_headings_when_fenced() -> None:
    text = "# Setup\n\n```bash\n# install it\npip install x\n```\n\nDone.\n"
    (chunk,) = chunk_document(doc(text, title="Setup"))
    assert chunk.heading == "Setup"
    assert "# install it" in chunk.text


def test_hashes_are_plain_text_when_document_is_txt() -> None:
    (chunk,) = chunk_document(doc("# not a heading\n\nbody\n", source="a.txt", title="A"))
    assert (chunk.heading, chunk.text) == ("", "A\n\n# not a heading\n\nbody")


def test_short_paragraphs_are_packed_together_when_they_fit() -> None:
    text = "\n\n".join(f"Paragraph {i} is short." for i in range(30))
    chunks = chunk_document(doc(text), max_chars=200, overlap=20)
    assert 1 < len(chunks) < 30
    assert all(len(c.text) <= 200 for c in chunks)
    bodies = [c.text.removeprefix("Returns policy\n\n") for c in chunks]
    assert "\n\n".join(bodies) == text


def test_long_paragraph_is_split_with_overlap_when_longer_than_max_chars() -> None:
    paragraph = LOREM * 12
    chunks = chunk_document(doc(paragraph), max_chars=300, overlap=60)
    bodies = [c.text.removeprefix("Returns policy\n\n") for c in chunks]
    assert len(chunks) > 4
    assert all(len(c.text) <= 300 for c in chunks)
    for previous, current in itertools.pairwise(bodies):
        # Each piece repeats whole words from the end of the previous one.
        carried = current[: current.index(" ", 20)]
        assert carried in previous[-60:]
        assert previous.endswith(previous[-60:])
    words = set(re.findall(r"\w+", paragraph))
    assert words == set(re.findall(r"\w+", " ".join(bodies)))


def test_long_unpunctuated_text_splits_on_words_when_no_sentence_fits() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_document(doc(text, title="T"), max_chars=200, overlap=30)
    bodies = [c.text.removeprefix("T\n\n") for c in chunks]
    assert all(len(c.text) <= 200 for c in chunks)
    # No word is cut in half: every token is a whole wordN.
    assert all(re.fullmatch(r"word\d+", t) for body in bodies for t in body.split())
    assert {f"word{i}" for i in range(400)} == {t for b in bodies for t in b.split()}


def test_ids_are_stable_and_indexed_when_chunking_twice() -> None:
    text = "# Returns policy\n\n" + "\n\n".join([LOREM] * 10)
    first, second = chunk_document(doc(text), 300, 50), chunk_document(doc(text), 300, 50)
    assert [c.id for c in first] == [c.id for c in second]
    assert [c.id for c in first] == [f"{'d' * 16}:{i:04d}" for i in range(len(first))]
    assert {c.doc_id for c in first} == {"d" * 16}


def test_no_chunks_when_document_is_blank() -> None:
    assert chunk_document(doc("\n\n   \n")) == []


@pytest.mark.parametrize(("max_chars", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_value_error_when_sizes_are_invalid(max_chars: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="max_chars"):
        chunk_document(doc("text"), max_chars=max_chars, overlap=overlap)
