"""Every command of `jointwatch` documents itself: --help exits 0, says what the
command does, and gives each option a help text. No services are needed."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from jointwatch.cli import main

REQUIRED_COMMANDS = {
    ("stack",),
    ("stack", "up"),
    ("stack", "down"),
    ("stack", "status"),
    ("bridge",),
    ("job",),
    ("job", "run"),
    ("simulate",),
    ("router",),
    ("sink",),
    ("responder",),
    ("demo",),
}


def _walk(cmd: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            out += _walk(cmd.commands[name], (*path, name))
    return out


TREE = _walk(main)


def _id(path: tuple[str, ...]) -> str:
    return " ".join(("jointwatch", *path))


def _flat(text: str) -> str:
    """Help text with its line wrapping undone, so a wrapped phrase still matches."""
    return re.sub(r"\s+", " ", text).strip()


def test_tree_contains_the_documented_commands() -> None:
    paths = {path for path, _ in TREE}
    missing = sorted(REQUIRED_COMMANDS - paths)
    assert not missing, f"commands missing from `jointwatch`: {[' '.join(p) for p in missing]}"


@pytest.mark.parametrize(("path", "cmd"), TREE, ids=[_id(p) for p, _ in TREE])
def test_help_describes_command_and_every_option(path: tuple[str, ...], cmd: click.Command) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, f"{_id(path)} --help exited {result.exit_code}:\n{result.output}"
    lines = result.output.splitlines()
    assert lines and lines[0].startswith("Usage: "), result.output

    # The description: the first non-blank line after the usage line, before the option list.
    body = [line.strip() for line in lines[1:]]
    description = next((line for line in body if line), "")
    assert description and not description.startswith(("Options:", "Commands:")), (
        f"{_id(path)} --help has no description line:\n{result.output}"
    )
    short = cmd.get_short_help_str(limit=200).rstrip(".").rstrip()
    assert short, f"{_id(path)} has no docstring / help"
    assert _flat(short.removesuffix("...")) in _flat(result.output)

    flat_output = _flat(result.output)
    undocumented = []
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        if not (param.help and param.help.strip()):
            undocumented.append("/".join(param.opts))
            continue
        for opt in param.opts:
            assert opt in result.output, f"{_id(path)} --help does not list {opt}"
        assert _flat(param.help) in flat_output, f"{_id(path)} --help does not show the help of {param.opts}"
    assert not undocumented, f"{_id(path)}: options without help text: {undocumented}"

    if isinstance(cmd, click.Group):
        for name in cmd.commands:
            assert re.search(rf"^\s+{re.escape(name)}\b", result.output, re.M), f"{_id(path)} --help does not list {name}"
