"""Every ``dptrain ...`` command in README.md composes and builds a valid run config.

The README's own table example once failed with Hydra's "Key 'age' is not in struct"; this test
extracts each command from the README text (comments dropped, ``\\`` continuations joined, the
first point of a ``-m`` sweep) and turns it into library objects exactly as the CLI would, so the
documentation cannot drift from the config schemas. It does not train (the commands point at
data this machine may not have).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from dptrain.cli.config import build_run_config

README = Path(__file__).resolve().parents[2] / "README.md"
# Commands that print and exit (help, the composed config) need no run config.
INFORMATIONAL = ("--cfg", "--help", "--hydra-help", "--info")


def readme_commands() -> list[str]:
    """The ``dptrain`` command lines of the README's code blocks, continuations joined."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", README.read_text(), re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" # ")[0].strip()
            if re.match(r"^(python -m )?dptrain(\s|$)", line):
                commands.append(line)
    return commands


def overrides_of(command: str) -> list[str]:
    """The command's overrides; a sweep (``-m a=1,2``) contributes its first point."""
    words = shlex.split(command)
    words = words[3:] if words[0] == "python" else words[1:]
    overrides = [w for w in words if w not in ("-m", "--multirun")]
    parser = OverridesParser.create()
    points = []
    for override in parser.parse_overrides(overrides):
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            points.append(f"{override.get_key_element()}={first}")
        else:
            points.append(override.input_line)
    return points


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_this_test_expects():
    assert len(COMMANDS) >= 15
    assert any("data=table" in command for command in COMMANDS)
    assert any(command.startswith("dptrain -m") for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_builds_a_run_config(compose_config, command):
    if any(flag in command.split() for flag in INFORMATIONAL):
        pytest.skip("prints and exits")
    run_config, _ = build_run_config(compose_config(overrides_of(command)))
    assert run_config.data is not None
