"""Shared fixtures for the knowledge unit tests: a tiny help center on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

HELP_CENTER = {
    "returns.md": (
        "# Returns policy\n\nWe want you to love what you bought.\n\n"
        "## Refund timing\n\nRefunds reach your card within 30 days of the return arriving.\n"
    ),
    "shipping/delivery.md": (
        "# Shipping\n\nStandard delivery takes 3-5 business days.\n\n"
        "## Tracking\n\nTrack your parcel from the order page.\n"
    ),
    "account/password-reset.txt": (
        "To reset your password, click Forgot password on the sign-in page.\n"
    ),
}


@pytest.fixture
def help_center(tmp_path: Path) -> Path:
    """A folder of three documents: returns, shipping (nested), password reset (.txt)."""
    root = tmp_path / "help"
    for name, text in HELP_CENTER.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root
