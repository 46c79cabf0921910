"""The fault and load suite an operator can run: `make chaos` (loopback only, bounded).

    .venv/bin/python bench/chaos.py [--skip-load] [--only NAME]

Each scenario is a real run against real parts (Redis, server processes or in-process
servers on a port, presidio, MiniLM), written as a test in tests/ so that its core also runs
in CI; this runs them one by one and prints a table: tried / held / failed, and how long
each took. Then (unless --skip-load) the load half: `bench/admission.py` — a burst of 32
conversations at once and a flooding client beside a polite one, with a scripted model
(instant answers: concurrency beyond what the CPU can generate), admission on and off; and
`bench/ws_load.py` — 32 and 128 websocket conversations at once, every accepted turn
answered exactly once.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCENARIOS: list[tuple[str, str, list[str]]] = [
    (
        "writes need the conversation's token",
        "0 writes accepted into a conversation without its token (REST)",
        ["tests/integration/test_server.py::"
         "test_rest_channel_refuses_writes_into_a_conversation_without_its_token"],
    ),
    (
        "paused past the lease",
        "a process frozen longer than its lock lease, taken over: one answer stored and sent",
        ["tests/integration/test_fencing.py"],
    ),
    (
        "server SIGSTOPped mid-answer",
        "two server processes: the one answering is paused past its job claim and lease, the "
        "other answers; woken, the first delivers and stores nothing",
        ["tests/integration/test_channels.py::"
         "test_a_server_paused_mid_answer_and_taken_over_answers_nothing_when_it_wakes"],
    ),
    (
        "answering process killed",
        "the process streaming an answer dies; another finishes it, once (two processes)",
        ["tests/e2e/test_widget.py::"
         "test_answer_completes_from_the_other_process_when_the_one_streaming_it_dies"],
    ),
    (
        "Redis AOF killed -9",
        "Redis (append-only file) killed between turns and mid-turn, restarted on its file: "
        "every acknowledged message kept, once, in order",
        ["tests/integration/test_redis_outage.py::"
         "test_redis_with_aof_killed_mid_conversation_loses_nothing_acknowledged"],
    ),
    (
        "32 websocket conversations",
        "32 widget conversations at once: each answered within 10 s, every answer stored once",
        ["tests/integration/test_ws_load.py"],
    ),
    (
        "Redis gone and back",
        "turns fail clearly while Redis is away and succeed when it is back",
        ["tests/integration/test_redis_outage.py"],
    ),
    (
        "worker dies mid-job",
        "a job whose worker went silent is taken over and run once",
        ["tests/integration/test_jobs.py::test_a_dead_workers_job_is_taken_over",
         "tests/integration/test_jobs.py::test_a_worker_never_takes_back_a_job_another_took_over",
         "tests/integration/test_jobs.py::"
         "test_a_worker_without_the_jobs_handler_passes_it_to_one_that_has_it"],
    ),
    (
        "webhook replays and retries",
        "concurrent retries and a replayed signed request are answered once",
        ["tests/integration/test_channels.py::"
         "test_webhook_reply_is_signed_and_retries_are_answered_once",
         "tests/integration/test_channels.py::"
         "test_a_signed_webhook_request_replayed_with_new_idempotency_keys_is_answered_once"],
    ),
    (
        "busy, then answered",
        "a question refused as busy after it was stored is answered on resend, once",
        ["tests/integration/test_server_busy.py"],
    ),
    (
        "hidden PII",
        "card numbers and e-mails with invisible or full-width characters are redacted",
        ["tests/integration/policies/test_presidio_redactor.py::"
         "test_pii_hidden_with_invisible_or_full_width_characters_is_still_redacted"],
    ),
    (
        "50 policy reloads",
        "RSS flat over 50 reloads of the policy file",
        ["tests/integration/policies/test_reload_memory.py"],
    ),
    (
        "hostile requests",
        "bodies that are not text, oversized bodies, bad websocket frames: 4xx, no 5xx",
        ["tests/integration/test_server.py::test_rest_bodies_that_are_not_text_get_4xx_not_500",
         "tests/integration/test_server.py::"
         "test_a_body_over_the_cap_is_refused_with_413_before_it_is_read",
         "tests/integration/test_server.py::"
         "test_error_frame_and_connection_stays_up_when_frame_is_bad"],
    ),
    (
        "OpenAPI fuzz",
        "schemathesis on every documented operation: 0 failures",
        ["tests/integration/test_openapi_fuzz.py"],
    ),
]  # fmt: skip


def run(nodes: list[str]) -> tuple[int, int, float]:
    """(tried, held) of the pytest cases under `nodes`, and the seconds it took."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rN", *nodes],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    passed = failed = 0
    for line in done.stdout.splitlines()[-3:]:
        words = line.replace(",", " ").split()
        for count, word in itertools.pairwise(words):
            if count.isdigit() and word.startswith("passed"):
                passed = int(count)
            if count.isdigit() and word.startswith(("failed", "error")):
                failed += int(count)
    if passed + failed == 0:  # it did not run at all
        failed = 1
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
    return passed + failed, passed, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-load", action="store_true", help="faults only, no load bench")
    parser.add_argument("--only", default="", help="run the scenarios whose name has this")
    args = parser.parse_args()
    rows = []
    for name, what, nodes in SCENARIOS:
        if args.only and args.only not in name:
            continue
        print(f"… {name}", flush=True)
        tried, held, seconds = run(nodes)
        rows.append((name, what, tried, held, tried - held, seconds))
    print(f"\n{'scenario':<38} {'tried':>5} {'held':>5} {'failed':>6} {'s':>6}  what must hold")
    for name, what, tried, held, failed, seconds in rows:
        print(f"{name:<38} {tried:>5} {held:>5} {failed:>6} {seconds:>6.0f}  {what}")
    bad = sum(row[4] for row in rows)
    if not args.skip_load and not args.only:
        print("\nload: bench/admission.py (a scripted model; admission on and off)\n", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "admission.py")], check=False)
        print("\nload: bench/ws_load.py (websocket conversations at once)\n", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "ws_load.py")], check=False)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
