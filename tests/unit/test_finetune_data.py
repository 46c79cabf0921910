"""Fine-tuning data: parsing with line errors, redaction counts, the assistant-only loss mask,
seeded splits and schedules, fact checks, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.llm.finetune.data import (
    IGNORE,
    Example,
    TrainMessage,
    read_examples,
    redact_examples,
    schedule,
    split,
    tokenize,
)
from bot.llm.finetune.train import contains_fact, markdown_report, read_checks
from bot.settings import LLMSettings


def write(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def chat(*pairs: tuple[str, str], **weights: int) -> dict[str, object]:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


def test_every_bad_line_is_named_with_its_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path / "data.jsonl",
        chat(("user", "hi"), ("assistant", "hello")),
        "{not json",
        {"messages": []},
        chat(("user", "hi"), ("robot", "beep")),
        chat(("assistant", "I start"), ("user", "hi")),
        chat(("user", "only a question")),
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "weight": 2},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "q", "weight": 0},
                {"role": "assistant", "content": "a"},
            ]
        },
    )
    with pytest.raises(ConfigError) as caught:
        read_examples(path)
    message = caught.value.message
    assert f"{path}:2: not JSON" in message
    assert f'{path}:3: "messages" must be a non-empty list' in message
    assert f"{path}:4: messages[1].role must be system, user or assistant, not 'robot'" in message
    assert f"{path}:5: the conversation must start with a user message" in message
    assert f"{path}:6: there is no assistant message to learn from" in message
    assert f"{path}:7: messages[1].weight must be 0 or 1" in message
    assert f"{path}:8: messages[0].weight applies to assistant messages only" in message
    assert f"{path}:1:" not in message


def test_examples_keep_their_line_and_weights(tmp_path: Path) -> None:
    path = write(
        tmp_path / "data.jsonl",
        "",
        {
            "messages": [
                {"role": "system", "content": "be kind"},
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "fixed reply", "weight": 0},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "a2"},
            ],
            "source": "conversation:abc",
        },
    )
    [example] = read_examples(path)
    assert example.line == 2
    assert [m.weight for m in example.messages] == [1, 1, 0, 1, 1]
    assert example.to_json()["messages"][2] == {
        "role": "assistant",
        "content": "fixed reply",
        "weight": 0,
    }


def test_an_empty_or_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no examples"):
        read_examples(write(tmp_path / "empty.jsonl", ""))
    with pytest.raises(ConfigError, match="cannot read the training data"):
        read_examples(tmp_path / "missing.jsonl")


def test_redaction_replaces_every_message_and_counts_entities() -> None:
    example = Example(
        (
            TrainMessage("user", "mail me at a@b.example"),
            TrainMessage("assistant", "sure, a@b.example noted"),
        )
    )

    def redact(text: str) -> tuple[str, list[str]]:
        return text.replace("a@b.example", "<EMAIL_ADDRESS>"), ["EMAIL_ADDRESS"] * text.count("@")

    [out], summary = redact_examples([example], redact)
    assert [m.content for m in out.messages] == [
        "mail me at <EMAIL_ADDRESS>",
        "sure, <EMAIL_ADDRESS> noted",
    ]
    assert summary.entities == {"EMAIL_ADDRESS": 2}
    assert (summary.messages, summary.messages_changed) == (2, 2)


def test_the_loss_covers_assistant_turns_only(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    example = Example(
        (
            TrainMessage("system", "be brief"),
            TrainMessage("user", "how long do i have"),
            TrainMessage("assistant", "thirty days"),
            TrainMessage("user", "and a refund"),
            TrainMessage("assistant", "sorry, no", weight=0),
            TrainMessage("user", "thanks"),
            TrainMessage("assistant", "you are welcome"),
        )
    )
    item = tokenize(example, tokenizer, max_tokens=4096)
    trained = [t for t, label in zip(item.input_ids, item.labels, strict=True) if label != IGNORE]
    assert all(label in (IGNORE, t) for t, label in zip(item.input_ids, item.labels, strict=True))
    text = tokenizer.decode(trained)
    # Each answer with its end-of-turn token, nothing of the user's, the system's, or the
    # weight-0 reply.
    assert text == "thirty days<|im_end|>\nyou are welcome<|im_end|>\n"
    cut = tokenize(example, tokenizer, max_tokens=10)
    assert cut.truncated and len(cut.input_ids) == 10 and cut.trained_tokens == 0


def test_split_and_schedule_are_seeded() -> None:
    examples = [
        Example((TrainMessage("user", str(i)), TrainMessage("assistant", "a"))) for i in range(20)
    ]
    train, held = split(examples, 0.1, seed=1)
    assert len(held) == 2 and len(train) == 18 and not set(map(id, held)) & set(map(id, train))
    assert split(examples, 0.1, seed=1) == (train, held)
    assert split(examples, 0.1, seed=2) != (train, held)
    assert len(split(examples[:2], 0.01, seed=0)[1]) == 1  # a share above 0 holds one out
    assert split(examples[:3], 0.0, seed=0)[1] == []
    with pytest.raises(ConfigError):
        split(examples, 1.0, seed=0)

    plan = schedule(train_size=5, batch_size=2, steps=7, seed=3)
    assert [len(b) for b in plan] == [2, 2, 1, 2, 2, 1, 2]
    assert sorted(i for b in plan[:3] for i in b) == list(range(5))  # one epoch sees all
    assert plan == schedule(5, 2, 7, seed=3) and plan != schedule(5, 2, 7, seed=4)


def test_fact_checks(tmp_path: Path) -> None:
    assert contains_fact("Gift wrap is **$4** per item.", ["$4"])
    assert contains_fact("Our   KELP boxes", ["kelp boxes"])
    assert not contains_fact("It costs $40.", ["$5", "five dollars"])
    path = write(
        tmp_path / "checks.jsonl",
        {"question": "q?", "expected": "x"},
        {"question": "q2?", "expected": ["y", "z"], "system": "s"},
    )
    checks = read_checks(path)
    assert [c.expected for c in checks] == [["x"], ["y", "z"]] and checks[1].system == "s"
    bad = write(tmp_path / "bad.jsonl", {"question": ""}, {"question": "q", "expected": 3})
    with pytest.raises(ConfigError) as caught:
        read_checks(bad)
    assert f"{bad}:1:" in caught.value.message and f"{bad}:2:" in caught.value.message


def test_the_markdown_report_shows_before_and_after() -> None:
    check = {"question": "q|?", "expected": ["x"], "answer": "it is x", "hit": True}
    miss = {**check, "answer": "no idea", "hit": False}
    report = {
        "adapter": "out",
        "base": "m",
        "device": "cpu",
        "steps": 3,
        "data": {"train_examples": 9, "eval_examples": 1, "trained_tokens": 40},
        "privacy": {
            "entities_removed": 2,
            "messages_changed": 1,
            "messages": 20,
            "entities_by_type": {"PERSON": 2},
        },
        "timing": {"steps_per_s": 0.5, "tokens_per_s": 100.0, "train_seconds": 6},
        "before": {"eval_loss": 3.0, "perplexity": 20.09, "check_share": 0.0, "checks": [miss]},
        "after": {"eval_loss": 1.0, "perplexity": 2.72, "check_share": 1.0, "checks": [check]},
    }
    text = markdown_report(report)
    assert "| eval loss | 3.000 | 1.000 |" in text
    assert "| answers with the expected fact | 0/1 (0%) | 1/1 (100%) |" in text
    assert "2 PII entities removed from 1 of 20 messages before tokenizing (PERSON 2)" in text
    assert "| q\\|? | ❌ no idea | ✅ it is x |" in text


def test_an_adapter_needs_the_local_engine(tmp_path: Path) -> None:
    LLMSettings(adapter=tmp_path)
    with pytest.raises(ValueError, match="adapter works with the local engine only"):
        LLMSettings(engine="openai", base_url="http://x:8000/v1", adapter=tmp_path)
