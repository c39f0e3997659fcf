"""Docs cannot drift: every command has help text and examples, and appears in README.md."""

from __future__ import annotations

from pathlib import Path

import typer.main

from kvcalc.cli.app import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    out: dict[str, object] = {}
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        out[name] = cmd
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            out[f"{name} {sub_name}"] = sub
    return out


def test_every_command_has_help_and_examples() -> None:
    for name, cmd in _commands().items():
        assert (getattr(cmd, "help", None) or "").strip(), f"`kvcalc {name}` has no help text"
        if name != "version":
            assert "kvcalc" in (getattr(cmd, "epilog", None) or ""), f"`kvcalc {name}` has no Examples epilog"


def test_every_command_appears_in_readme() -> None:
    for name in _commands():
        assert f"kvcalc {name}" in README, f"`kvcalc {name}` is not documented in README.md"


def test_readme_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:40])
    assert "kvcalc estimate llama-2-7b --seq-len 4096" in first_screen
    assert "<!-- test-command -->" in first_screen and "pytest" in first_screen
