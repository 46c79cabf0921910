"""The OpenAPI document is true: schemathesis sends schema-made requests (valid and not) to
every documented operation of a real server, and every response must be one the document
lists, with the body it describes, and never a 5xx. A bounded number of examples per
operation (`SCHEMATHESIS_EXAMPLES`, default 12), so that it runs in CI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from bot.app import create_app
from bot.settings import LLMSettings, Settings
from tests.support import LiveServer, live_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "fuzz-admin-key"
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzz_server(
    tiny_model_dir: Path, demo_index: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("fuzz")
    documents = data / "documents"
    shutil.copytree(ROOT / "demo" / "kb", documents)
    index = data / "index"
    shutil.copytree(demo_index, index)
    app_settings = Settings(
        redis_url=redis_url,
        key_prefix="sbfuzz:",
        data_dir=data,
        admin_api_key=KEY,
        llm=LLMSettings(model=str(tiny_model_dir), max_new_tokens=4),
        knowledge={"index_dir": index, "documents_dir": documents, "abstain": False},
    )
    with live_server(create_app(app_settings)) as live:
        yield live


def excluded(label: str) -> list[Any]:
    """Checks that cannot hold for an operation, and why."""
    if label == "PUT /admin/documents/{name}":
        # Any bytes fit the schema of a file; the server reads the file and refuses one it
        # cannot (a documented 422): no schema can say "a readable PDF".
        return [positive_data_acceptance]
    return []


def test_every_documented_operation_answers_as_documented(fuzz_server: LiveServer) -> None:
    # schemathesis' pytest plugin does not run under this pytest: its Python API, operation
    # by operation, each with hypothesis.
    api = schemathesis.openapi.from_url(fuzz_server.http + "/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            # The admin key: the operations behind it are tested, not only their 401.
            case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=60,
                excluded_checks=excluded(case.operation.label),
            )

        try:
            check()
        except BaseException as exc:  # every failing operation is reported, not the first only
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures[operation.label] = str(exc)[:1500]
    assert operations >= 10
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
