"""Intent matching of the action stage on real customer utterances: MiniLM vs. lexical.

    .venv/bin/python bench/actions.py [--threshold T] [--confirm-above C]

Six banking actions are declared the way a company would write them (five example
sentences each, written here, not taken from the data). They are matched against the 200
BANKING77 test utterances in ../shared/eval/utterances (77 intents: those of the six actions
must start them, the other 71 intents must not) and 50 CLINC150 out-of-scope utterances
(must not). For the action stage's matcher (MiniLM, the default embedder) and, side by side,
the same matcher on a lexical hashing embedder (a bag-of-words baseline), it prints:

- right action started at once (score >= threshold), or after "Did you mean ...?" (in the
  confirm band), or missed (the message went to retrieval instead);
- wrong actions: a message of another intent (or out of scope) that started an action at
  once, or was asked "Did you mean ...?";
- a threshold sweep. A figure, not a pass/fail test.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse
import json
import time

from bot.actions.engine import ActionEngine
from bot.actions.schema import example
from bot.sessions import InMemorySessionStore
from bot.settings import SessionSettings
from knowledge.embeddings import Embedder, HashingEmbedder, MiniLMEmbedder

EVAL = ROOT.parent / "shared" / "eval" / "utterances"

# Written for this benchmark in a support team's words; BANKING77 intent names as labels.
INTENTS = {
    "card_arrival": [
        "my new card hasn't arrived yet",
        "when will I receive my card",
        "the card you sent me never came",
        "how long until my card gets here",
        "I'm still waiting for my card in the mail",
    ],
    "lost_or_stolen_card": [
        "I lost my card",
        "my card was stolen",
        "someone took my wallet with my card",
        "block my card, I can't find it",
        "report a stolen card",
    ],
    "request_refund": [
        "I want a refund",
        "can I get my money back for this purchase",
        "please refund my order",
        "how do I request a refund",
        "return the money for an item I bought",
    ],
    "terminate_account": [
        "close my account",
        "I want to delete my account",
        "how do I cancel my membership",
        "terminate my account please",
        "I don't want to be a customer anymore",
    ],
    "change_pin": [
        "change my PIN",
        "how do I set a new PIN",
        "I want a different PIN code",
        "update the PIN of my card",
        "can I pick my own PIN",
    ],
    "cancel_transfer": [
        "cancel a transfer",
        "stop the payment I just sent",
        "I sent money to the wrong person, undo it",
        "can I reverse a bank transfer",
        "cancel my last transaction",
    ],
}


def load(name: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (EVAL / name).read_text().splitlines() if line.strip()]


def engine_for(embedder: Embedder, threshold: float, confirm: float) -> ActionEngine:
    config = example(
        {
            "server": {"url": "http://unused.invalid"},
            "intents": [
                {
                    "name": name,
                    "examples": examples,
                    "action": f"action_{name}",
                    "threshold": threshold,
                    "confirm_above": confirm,
                }
                for name, examples in INTENTS.items()
            ],
        }
    )
    engine = ActionEngine(config, embedder, InMemorySessionStore(SessionSettings()))
    engine.warm_up()
    return engine


def score(rows: list[dict[str, str]], engine: ActionEngine) -> list[tuple[str, str, float]]:
    """(gold intent, best matching intent, score) per utterance."""
    out = []
    for row in rows:
        found = engine.match(row["text"])
        assert found is not None
        out.append((row["intent"], found[0].name, found[1]))
    return out


def summary(
    scored: list[tuple[str, str, float]], threshold: float, confirm: float
) -> dict[str, float]:
    ours = [s for s in scored if s[0] in INTENTS]
    others = [s for s in scored if s[0] not in INTENTS]
    at_once = sum(g == m and v >= threshold for g, m, v in ours)
    asked = sum(g == m and confirm <= v < threshold for g, m, v in ours)
    wrong_at_once = sum(v >= threshold for g, m, v in others) + sum(
        g != m and v >= threshold for g, m, v in ours
    )
    wrong_asked = sum(confirm <= v < threshold for g, m, v in others)
    return {
        "ours": len(ours),
        "others": len(others),
        "at_once": at_once / len(ours),
        "after_question": asked / len(ours),
        "missed": 1 - (at_once + asked) / len(ours),
        "wrong_at_once": wrong_at_once / len(others),
        "wrong_asked": wrong_asked / len(others),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--threshold", type=float, default=0.72)
    parser.add_argument("--confirm-above", type=float, default=0.55)
    args = parser.parse_args()
    rows = load("banking77_utterances.jsonl") + load("clinc150_out_of_scope.jsonl")
    results = {}
    for label, embedder in (
        ("MiniLM (default)", MiniLMEmbedder()),
        ("lexical baseline", HashingEmbedder()),
    ):
        embedder.warm_up()
        engine = engine_for(embedder, args.threshold, args.confirm_above)
        began = time.perf_counter()
        scored = score(rows, engine)
        per_message = (time.perf_counter() - began) / len(rows) * 1000
        results[label] = (scored, per_message)
    ours = sum(r["intent"] in INTENTS for r in rows)
    print(
        f"\nAction intent matching: {len(rows)} real utterances, {ours} of the 6 actions' "
        f"intents, {len(rows) - ours} of 71 other intents or out of scope"
    )
    print(f"threshold {args.threshold}, 'Did you mean' band from {args.confirm_above}\n")
    header = (
        f"  {'':<18}{'at once':>9}{'asked':>8}{'missed':>8}{'wrong':>8}{'wrong?':>8}{'ms/msg':>8}"
    )
    print(header)
    for label, (scored, ms) in results.items():
        s = summary(scored, args.threshold, args.confirm_above)
        print(
            f"  {label:<18}{s['at_once']:>9.0%}{s['after_question']:>8.0%}{s['missed']:>8.0%}"
            f"{s['wrong_at_once']:>8.1%}{s['wrong_asked']:>8.1%}{ms:>8.1f}"
        )
    print(
        "  (at once/asked/missed: of the actions' utterances; wrong: others that started an "
        "action at once; wrong?: others asked 'Did you mean ...?')"
    )
    print("\nThreshold sweep, MiniLM (band: threshold - 0.17):")
    scored = results["MiniLM (default)"][0]
    for threshold in (0.6, 0.65, 0.7, 0.72, 0.75, 0.8, 0.85):
        s = summary(scored, threshold, threshold - 0.17)
        print(
            f"  {threshold:.2f}: at once {s['at_once']:.0%}, asked {s['after_question']:.0%}, "
            f"missed {s['missed']:.0%}, wrong {s['wrong_at_once']:.1%}, "
            f"wrong? {s['wrong_asked']:.1%}"
        )


if __name__ == "__main__":
    main()
