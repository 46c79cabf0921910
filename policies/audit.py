"""Policy decisions as audit events: one structured log line and one counter per finding.

An event names the conversation, channel, point, stage, rule and action, and for PII the
entity type and count — never the text. The counters (`PolicyAudit.counts`) are what the
metrics endpoint exports.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterable

from policies.base import Context
from policies.verdicts import Finding

log = logging.getLogger("switchboard.audit")

CounterKey = tuple[str, str, str, str]  # point, stage, rule, action


class PolicyAudit:
    """Logs and counts findings; safe to call from the event loop and the worker thread."""

    def __init__(self) -> None:
        self._counts: Counter[CounterKey] = Counter()
        self._lock = threading.Lock()

    def record(self, context: Context, findings: Iterable[Finding]) -> None:
        for finding in findings:
            event = {
                "conversation": context.conversation,
                "channel": context.channel,
                "point": context.point,
                "stage": finding.stage,
                "rule": finding.rule,
                "action": finding.action,
                "count": finding.count,
            }
            if finding.entity_type:
                event["entity_type"] = finding.entity_type
            if finding.score is not None:
                event["score"] = finding.score
            log.info("policy %s", json.dumps(event, sort_keys=True))
            with self._lock:
                self._counts[(context.point, finding.stage, finding.rule, finding.action)] += (
                    finding.count
                )

    def counts(self) -> dict[CounterKey, int]:
        """A snapshot of the counters: (point, stage, rule, action) -> total."""
        with self._lock:
            return dict(self._counts)
