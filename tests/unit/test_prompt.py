from bot.llm.base import ChatMessage
from bot.prompt import NO_PASSAGES, build_prompt
from bot.types import Citation, Passage, Turn


def _words(messages: list[ChatMessage]) -> int:
    return sum(len(m.content.split()) for m in messages)


def _passage(title: str, words: int) -> Passage:
    return Passage(" ".join(["word"] * words), Citation(title, f"{title}.md"), 0.5)


def test_prompt_has_system_history_question_when_it_fits() -> None:
    history = [Turn("user", "hi there"), Turn("assistant", "hello")]
    prompt = build_prompt(
        company="ACME",
        question="refund?",
        passages=[_passage("Refunds", 5)],
        history=history,
        budget=10_000,
        count_tokens=_words,
    )
    roles = [m.role for m in prompt.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert "ACME" in prompt.messages[0].content
    assert "[1] Refunds" in prompt.messages[0].content
    assert prompt.messages[-1].content == "refund?"
    assert prompt.history_used == 2


def test_history_is_trimmed_oldest_first_when_over_budget() -> None:
    history = [
        Turn("user", "old " * 50),
        Turn("assistant", "old answer " * 50),
        Turn("user", "recent"),
        Turn("assistant", "recent answer"),
    ]
    passages = [_passage("A", 20)]
    full = build_prompt(
        company="X",
        question="q",
        passages=passages,
        history=history,
        budget=10_000,
        count_tokens=_words,
    )
    budget = _words(full.messages) - 100
    prompt = build_prompt(
        company="X",
        question="q",
        passages=passages,
        history=history,
        budget=budget,
        count_tokens=_words,
    )
    assert prompt.history_used == 2
    assert [m.content for m in prompt.messages[1:3]] == ["recent", "recent answer"]
    assert prompt.passages == passages


def test_passages_dropped_lowest_rank_first_when_history_is_gone() -> None:
    passages = [_passage("Best", 30), _passage("Second", 30), _passage("Worst", 30)]
    full = build_prompt(
        company="X", question="q", passages=passages, history=[], budget=10_000, count_tokens=_words
    )
    prompt = build_prompt(
        company="X",
        question="q",
        passages=passages,
        history=[],
        budget=_words(full.messages) - 40,
        count_tokens=_words,
    )
    assert [p.citation.title for p in prompt.passages] == ["Best"]
    assert "Worst" not in prompt.messages[0].content


def test_system_prompt_is_never_cut_when_budget_is_tiny() -> None:
    prompt = build_prompt(
        company="X",
        question="q",
        passages=[_passage("A", 10)],
        history=[],
        budget=1,
        count_tokens=_words,
    )
    assert prompt.passages == []
    assert NO_PASSAGES in prompt.messages[0].content
    assert "customer-support assistant of X" in prompt.messages[0].content
