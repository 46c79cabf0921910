"""Policies reload when the file changes: a good file swaps in whole, a bad one is refused."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from policies.base import Context
from policies.engine import PolicyEngine
from policies.pii import PatternRedactor
from policies.reload import PolicyReloader
from policies.schema import PolicyFile, load_policy
from policies.verdicts import Allow, Block

FIRST = "version: 1\nstages:\n  input: [limits, pii]\nlimits:\n  max_input_chars: 100\n"
SECOND = FIRST.replace("max_input_chars: 100", "max_input_chars: 10")
BAD = FIRST.replace("max_input_chars: 100", "max_input_chars: lots")


class Holder:
    """What `Components` does: one live engine, swapped whole."""

    def __init__(self, path: Path) -> None:
        self.engine = PolicyEngine(load_policy(path), PatternRedactor())
        self.closed: list[PolicyEngine] = []

    def build(self, policy: PolicyFile) -> PolicyEngine:
        return PolicyEngine(policy, PatternRedactor())

    def swap(self, engine: PolicyEngine) -> PolicyEngine:
        old, self.engine = self.engine, engine
        return old


def rewrite_new(path: Path, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def rewrite(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000, before + 1_000_000))  # a visible mtime change


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(FIRST)
    return path


async def test_new_rules_apply_when_the_file_changes(policy_file: Path) -> None:
    holder = Holder(policy_file)
    reloader = PolicyReloader(policy_file, holder.build, holder.swap, grace_s=0.05)
    text = "Where is my order?"
    assert isinstance(await holder.engine.check_input(text), Allow)
    assert not await reloader.check()  # unchanged: nothing to do
    rewrite(policy_file, SECOND)
    old = holder.engine
    assert await reloader.check()
    assert isinstance(await holder.engine.check_input(text), Block)
    # A turn that took the old engine before the swap finishes on it, whole.
    assert isinstance(await old.check_input(text), Allow)
    await asyncio.sleep(0.1)  # the old engine is closed after the grace period
    with pytest.raises(RuntimeError):
        await old.check_input(text)
    holder.engine.close()


async def test_a_replaced_engine_is_reclaimed_though_the_models_are_frozen(
    policy_file: Path,
) -> None:
    import gc
    import weakref

    holder = Holder(policy_file)
    reloader = PolicyReloader(policy_file, holder.build, holder.swap, grace_s=0.05)
    first = weakref.ref(holder.engine)
    holder.engine.itself = holder.engine  # type: ignore[attr-defined]  # only gc frees a cycle
    rewrite(policy_file, SECOND)
    assert await reloader.check()
    assert gc.get_freeze_count() > 0  # the new engine's objects are frozen at once
    await asyncio.sleep(0.2)  # after the grace period: closed, unfrozen, collected
    assert first() is None
    holder.engine.close()


async def test_old_policy_keeps_serving_when_the_new_file_is_bad(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = Holder(policy_file)
    reloader = PolicyReloader(policy_file, holder.build, holder.swap)
    live = holder.engine
    rewrite(policy_file, BAD)
    with caplog.at_level(logging.ERROR, logger="policies.reload"):
        assert not await reloader.check()
    assert holder.engine is live
    assert f"{policy_file}:5: limits.max_input_chars" in reloader.last_error
    assert "previous policy keeps serving" in caplog.text
    # Fixing the file is picked up on the next check.
    rewrite(policy_file, SECOND)
    assert await reloader.check() and holder.engine is not live
    assert reloader.reloads == 1 and reloader.last_error == ""
    holder.engine.close()


async def test_turns_under_load_see_one_policy_or_the_other_when_reloading(
    policy_file: Path,
) -> None:
    holder = Holder(policy_file)
    reloader = PolicyReloader(policy_file, holder.build, holder.swap, grace_s=5)
    outcomes: list[str] = []

    async def turn(i: int) -> None:
        engine = holder.engine  # what the manager does: one engine per turn
        first = await engine.check_input("x" * 50, Context("input", conversation=str(i)))
        await asyncio.sleep(0)
        second = await engine.check_input("x" * 50, Context("input", conversation=str(i)))
        outcomes.append(f"{type(first).__name__}/{type(second).__name__}")

    async def reload_midway() -> None:
        await asyncio.sleep(0.01)
        rewrite(policy_file, SECOND)
        assert await reloader.check()

    await asyncio.gather(*(turn(i) for i in range(200)), reload_midway())
    assert len(outcomes) == 200
    assert set(outcomes) <= {"Allow/Allow", "Block/Block"}  # never half old, half new
    await turn(200)
    assert outcomes[-1] == "Block/Block"
    holder.engine.close()


async def test_a_deleted_policy_file_is_logged_once_and_the_policy_keeps_serving(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = Holder(policy_file)
    reloader = PolicyReloader(policy_file, holder.build, holder.swap)
    live = holder.engine
    os.remove(policy_file)
    with caplog.at_level(logging.ERROR, logger="policies.reload"):
        assert not await reloader.check()
        assert not await reloader.check()
    assert holder.engine is live
    assert caplog.text.count("the policy file is gone") == 1
    assert "previous policy keeps serving" in caplog.text
    assert "gone" in reloader.last_error
    # Put back (changed): loaded again.
    rewrite_new(policy_file, SECOND)
    assert await reloader.check() and holder.engine is not live
    holder.engine.close()
