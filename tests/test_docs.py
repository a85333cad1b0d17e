from __future__ import annotations

from pathlib import Path

from settings_support import settings_variables

ROOT = Path(__file__).resolve().parent.parent


def test_readme_lists_every_setting() -> None:
    """Every IDSYNC_ variable the settings accept has a row in the README's table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    variables = settings_variables()
    assert len(variables) > 40
    missing = [v for v in variables if f"`{v}`" not in readme]
    assert missing == []


def test_readme_gives_the_two_commands() -> None:
    """The README's set-up section names exactly `make demo` and `make test`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme
    assert "make test" in readme
