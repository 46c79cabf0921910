"""The policy file's stage sections, their placement per point, and per-channel overrides."""

from __future__ import annotations

import pytest

from policies.schema import PolicyFile, PolicyFileError, parse_policy
from tests.support import assert_policy_error

CHANNELS = """\
version: 1
links:
  allowed_domains: [northwind.example]
limits:
  max_input_chars: 2000
channels:
  web:
    limits:
      max_input_chars: 500
    stages:
      input: [limits, pii, injection, toxicity]
  slack:
    links:
      allowed_domains: [northwind.example, wiki.northwind.example]
"""


def test_channel_overrides_merge_over_the_file_when_a_channel_is_named() -> None:
    policy = parse_policy(CHANNELS)
    web, slack, other = (policy.for_channel(c) for c in ("web", "slack", "rest"))
    assert web.limits.max_input_chars == 500
    assert web.limits.per_user == policy.limits.per_user  # untouched keys are inherited
    assert web.stages.input == ["limits", "pii", "injection", "toxicity"]
    assert web.links.allowed_domains == ["northwind.example"]
    assert slack.links.allowed_domains == ["northwind.example", "wiki.northwind.example"]
    assert slack.limits.max_input_chars == 2000
    assert other is policy and policy.for_channel(None) is policy
    assert web.channels == {} and web is policy.for_channel("web")  # computed once


ERRORS = [
    # (text, line, location, phrase)
    ("version: 1\nstages:\n  storage: []\n", 3, "stages", "storage must include pii"),
    ("version: 1\nstages:\n  output: [pii, handoff]\n", 3, "stages",
     "handoff cannot run at output"),
    ("version: 1\nstages:\n  input: [pii, pii]\n", 3, "stages", "lists a stage twice"),
    ("version: 1\nstages:\n  storage: [scrub, pii]\n", 3, "stages", "storage must start with pii"),
    ("version: 1\nstages:\n  input: [pii, scrub]\n", 3, "stages", "scrub cannot run at input"),
    ("version: 1\nscrub:\n  digits: -1\n", 3, "scrub.digits", "greater than or equal to 0"),
    ("version: 1\nscrub:\n  names: true\n", 3, "scrub.names", "unknown key"),
    ("version: 1\nstages:\n  input: [pii, spam]\n", 3, "stages.input[1]", "Input should be"),
    ("version: 1\nlinks:\n  allowed_domains: [https://x.example/]\n", 3,
     "links.allowed_domains", "not a host name"),
    ("version: 1\nlimits:\n  per_user: {requests: 0, window_s: 60}\n", 3,
     "limits.per_user.requests", "greater than or equal to 1"),
    ("version: 1\ntopics:\n  blocked:\n    - name: legal\n      examples: []\n", 5,
     "topics.blocked[0].examples", "at least 1"),
    ("version: 1\ntopics:\n  threshold: 0\n", 3, "topics.threshold", "greater than 0"),
    ("version: 1\nhandoff:\n  after_blocks: -1\n", 3, "handoff.after_blocks", "greater than"),
    ("version: 1\nchannels:\n  web:\n    version: 2\n", 3, "channels", "unknown section"),
    ("version: 1\nchannels:\n  Web Chat: {}\n", 3, "channels", "lowercase"),
    # An override's own mistake is reported on the override's line...
    ("version: 1\nchannels:\n  web:\n    limits:\n      max_input_chars: -5\n", 5,
     "channels.web.limits.max_input_chars", "greater than or equal to 0"),
    ("version: 1\nchannels:\n  web:\n    pii:\n      enabeld: true\n", 5,
     "channels.web.pii.enabeld", "unknown key"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "location", "phrase"), ERRORS)
def test_error_names_line_and_location_when_a_section_is_invalid(
    text: str, line: int, location: str, phrase: str
) -> None:
    assert_policy_error(text, line, location, phrase)


def test_override_that_breaks_a_base_rule_names_the_channel_when_invalid() -> None:
    # ...and a combination that only fails once merged says which channel made it fail.
    text = (
        "version: 1\nstages:\n  storage: [pii]\nchannels:\n  web:\n    stages:\n      storage: []\n"
    )
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "bad.yaml")
    assert any("storage must include pii" in reason for _, _, reason in caught.value.errors)
    assert any(line == 7 for line, _, _ in caught.value.errors)


def test_defaults_put_each_stage_where_it_belongs_when_nothing_is_said() -> None:
    stages = PolicyFile(version=1).stages
    assert stages.input[0] == "limits" and "injection" in stages.input
    assert stages.retrieval == ["pii", "injection"]
    assert stages.output[0] == "pii" and "links" in stages.output
    assert stages.storage == ["pii", "scrub"]
