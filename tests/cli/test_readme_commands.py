"""Every ``dptrain ...`` command in README.md composes and builds a valid run config.

The README's own table example once failed with Hydra's "Key 'age' is not in struct"; this test
extracts each command from the README text (comments dropped, ``\\`` continuations joined, the
first point of a ``-m`` sweep) and turns it into library objects exactly as the CLI would, so the
documentation cannot drift from the config schemas. The commands on the built-in ACTG 175 data
(no data files, no cluster) are also run end to end at tiny settings (slow); the others point at
data or clusters a test machine may not have, and are composed only.
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


# Commands on the built-in ACTG 175 data, without a cluster: these are run, at tiny settings.
RUNNABLE = [
    c
    for c in COMMANDS
    if "data=" not in c
    and "experiment=" not in c
    and "executor=" not in c
    and "launcher=" not in c
    and not any(flag in c.split() for flag in INFORMATIONAL)
]
TINY = {
    "train.epochs": "1",
    "audit.num_models": "4",
    "audit.null_repeats": "2",
    "audit.rmia_num_population": "50",
    "audit.workers": "1",
    "tracker": "none",
}


def tiny(overrides: list[str]) -> list[str]:
    """The command's overrides with its costly values replaced by tiny ones (``auto`` kept)."""
    keys = {o.split("=", 1)[0]: o for o in overrides}
    out = [o for k, o in keys.items() if k not in TINY or (k == "tracker" and o != "tracker=wandb")]
    for key, value in TINY.items():
        if key == "audit.num_models" and keys.get(key, "").endswith("=auto"):
            out += [keys[key], "audit.max_models=4", "audit.auto_round_models=2"]
        elif key == "tracker" and key in keys:
            continue
        else:
            out.append(f"{key}={value}")
    return out


def test_the_runnable_commands_are_found():
    assert len(RUNNABLE) >= 8 and "dptrain privacy=none" in RUNNABLE


@pytest.mark.slow
@pytest.mark.parametrize("command", RUNNABLE)
def test_readme_command_runs_at_tiny_settings(monkeypatch, capsys, tmp_path, command):
    from .test_main import run_app

    code, out, err = run_app(monkeypatch, capsys, tmp_path / "run", tiny(overrides_of(command)))
    assert code == 0, err
    assert (tmp_path / "run" / "results.json").is_file() and "report " in out
