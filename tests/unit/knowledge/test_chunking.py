from __future__ import annotations

import itertools
import re

import pytest

from knowledge.chunking import TokenCounter, chunk_document, default_counter
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


def tokens(text: str) -> int:
    return default_counter()(text)


def test_short_paragraphs_are_packed_together_when_they_fit() -> None:
    text = "\n\n".join(f"Paragraph {i} is short." for i in range(30))
    chunks = chunk_document(doc(text), max_tokens=50, overlap=0)
    assert 1 < len(chunks) < 30
    assert all(tokens(c.text) <= 50 for c in chunks)
    bodies = [c.text.removeprefix("Returns policy\n\n") for c in chunks]
    assert "\n\n".join(bodies) == text


def test_long_paragraph_is_split_with_token_overlap_when_longer_than_max_tokens() -> None:
    paragraph = LOREM * 12
    chunks = chunk_document(doc(paragraph), max_tokens=60, overlap=15)
    bodies = [c.text.removeprefix("Returns policy\n\n") for c in chunks]
    assert len(chunks) > 4
    assert all(tokens(c.text) <= 60 for c in chunks)
    for previous, current in itertools.pairwise(bodies):
        # Each piece starts with whole sentences repeated from the end of the previous one.
        first_sentence = re.split(r"(?<=[.!?])\s", current, maxsplit=1)[0]
        assert first_sentence in previous
        assert 0 < tokens(first_sentence) <= 15
    words = set(re.findall(r"\w+", paragraph))
    assert words == set(re.findall(r"\w+", " ".join(bodies)))


def test_long_unpunctuated_text_splits_on_words_when_no_sentence_fits() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_document(doc(text, title="T"), max_tokens=40, overlap=8)
    bodies = [c.text.removeprefix("T\n\n") for c in chunks]
    assert all(tokens(c.text) <= 40 for c in chunks)
    # No word is cut in half: every token is a whole wordN.
    assert all(re.fullmatch(r"word\d+", t) for body in bodies for t in body.split())
    assert {f"word{i}" for i in range(400)} == {t for b in bodies for t in b.split()}
    for previous, current in itertools.pairwise(bodies):
        assert previous.split()[-1] in current.split()[:8]  # words repeated as overlap


def test_sizes_are_measured_in_tokens_when_words_are_long() -> None:
    # Long technical identifiers are many word pieces each: a character budget would
    # overflow the embedding model's window, a token budget cannot.
    text = " ".join(f"CWSIG{i:04d}E_SSL_HANDSHAKE_FAILURE" for i in range(200))
    chunks = chunk_document(doc(text, title="T"), max_tokens=128, overlap=16)
    assert all(tokens(c.text) <= 128 for c in chunks)
    assert all(len(c.text) < 128 * 4 for c in chunks)


def test_counter_counts_with_the_models_tokenizer_when_given_a_folder() -> None:
    from knowledge.embeddings import builtin_model_path

    counter = TokenCounter(str(builtin_model_path()))
    assert counter("Refunds take thirty days.") == tokens("Refunds take thirty days.") == 6
    assert TokenCounter().name == "sentence-transformers/all-MiniLM-L6-v2"
    long_text = "word " * 300
    assert counter(long_text) == 300  # the tokenizer file's truncation (128) is lifted


def test_ids_are_stable_and_indexed_when_chunking_twice() -> None:
    text = "# Returns policy\n\n" + "\n\n".join([LOREM] * 10)
    first, second = chunk_document(doc(text), 64, 16), chunk_document(doc(text), 64, 16)
    assert [c.id for c in first] == [c.id for c in second]
    assert [c.id for c in first] == [f"{'d' * 16}:{i:04d}" for i in range(len(first))]
    assert {c.doc_id for c in first} == {"d" * 16}


def test_no_chunks_when_document_is_blank() -> None:
    assert chunk_document(doc("\n\n   \n")) == []


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_value_error_when_sizes_are_invalid(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_document(doc("text"), max_tokens=max_tokens, overlap=overlap)
