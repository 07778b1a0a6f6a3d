"""Every ``dptrain ...`` command in README.md composes, builds a valid run config, and runs.

The README's own table example once failed with Hydra's "Key 'age' is not in struct"; this test
extracts each command from the README text (comments dropped, ``\\`` continuations joined) and
turns it into library objects exactly as the CLI would, so the documentation cannot drift from the
config schemas. Every command is also run end to end at tiny settings (slow): those on the built-in
ACTG 175 data as written; those on images, ECGs and user files on fake data written in the same
on-disk formats where the README says the files live; those that send work to a cluster with the
cluster replaced by its local stand-in (a Ray head started here, submitit's local executor and
launcher for SLURM), sweeps through the launcher they name."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
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


# Commands on images, ECGs and user files: run end to end on fake data written in the same
# on-disk formats (MedMNIST .npz, image folder + CSV, PTB-XL and MIT-BIH WFDB, a visits CSV),
# found where the README says: the shared data folder (here $DPTRAIN_DATA) or the path given.
ON_FAKE_DATA = [
    c
    for c in COMMANDS
    if c not in RUNNABLE
    and "executor=" not in c
    and "launcher=" not in c
    and not any(flag in c.split() for flag in INFORMATIONAL)
]


def _write_visits(path: Path) -> None:
    """The README's visits table: patient_id, died, discharge_date, ward, sex, race, insurance,
    age."""
    from dptrain.data.fake import fake_ehr_table

    table = fake_ehr_table(n_patients=700, max_records_per_patient=3, seed=5)
    table = table.rename(columns={"label": "died", "site": "ward"})
    rows = len(table)
    table["discharge_date"] = [f"2026-0{1 + i % 9}-1{i % 10}" for i in range(rows)]
    table["race"] = [("white", "black", "asian")[i % 3] for i in table["patient_id"].index]
    table["race"] = table.groupby("patient_id")["race"].transform("first")
    table["insurance"] = table.groupby("patient_id")["ward"].transform("first")
    table.to_csv(path, index=False)


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> tuple[Path, Path]:
    """(shared data folder, working directory) holding every file the README's commands name."""
    from dptrain.data.fake import (
        write_fake_image_folder,
        write_fake_medmnist_npz,
        write_fake_mitbih,
        write_fake_ptbxl,
    )

    shared = tmp_path_factory.mktemp("shared_data")
    for name, seed in (("breastmnist", 1), ("pneumoniamnist", 2)):
        folder = shared / "images" / name
        folder.mkdir(parents=True)
        write_fake_medmnist_npz(folder / f"{name}.npz", n_train=120, n_val=20, n_test=60, seed=seed)
    write_fake_ptbxl(shared / "ecg" / "ptbxl", n_patients=200, seed=3)
    write_fake_mitbih(
        shared / "ecg" / "mitdb", records=[str(r) for r in range(100, 108)], seconds=60, seed=4
    )
    work = tmp_path_factory.mktemp("work")
    write_fake_medmnist_npz(
        work / "dermamnist.npz", n_train=140, n_val=20, n_test=70, channels=3, n_classes=3, seed=6
    )
    write_fake_image_folder(
        work / "cxr", n_patients=150, max_images_per_patient=3, multilabel=True, seed=7
    )
    _write_visits(work / "visits.csv")
    return shared, work


def test_every_readme_command_is_run_somewhere():
    assert set(ON_FAKE_DATA) | set(RUNNABLE) | set(ON_A_CLUSTER) | {
        c for c in COMMANDS if any(flag in c.split() for flag in INFORMATIONAL)
    } == set(COMMANDS)
    assert any("experiment=ptbxl" in c for c in ON_FAKE_DATA)
    assert any("experiment=mitbih" in c for c in ON_FAKE_DATA)
    assert any("experiment=image_folder" in c for c in ON_FAKE_DATA)
    assert any("data=table" in c for c in ON_FAKE_DATA)


@pytest.mark.slow
@pytest.mark.parametrize("command", ON_FAKE_DATA)
def test_readme_command_runs_on_fake_data(monkeypatch, capsys, tmp_path, fake_data, command):
    from .test_main import run_app

    shared, work = fake_data
    monkeypatch.setenv("DPTRAIN_DATA", str(shared))
    monkeypatch.chdir(work)
    torch_threads = __import__("torch").get_num_threads()
    __import__("torch").set_num_threads(1)
    try:
        code, out, err = run_app(monkeypatch, capsys, tmp_path / "run", tiny(overrides_of(command)))
    finally:
        __import__("torch").set_num_threads(torch_threads)
    assert code == 0, err
    assert (tmp_path / "run" / "results.json").is_file() and "report " in out


# Commands that send work elsewhere (Ray, SLURM, Hydra launchers): run here with the cluster
# replaced by its local stand-in, the rest of the command as written. Sweeps run for real (their
# first two points) through the launcher named.
ON_A_CLUSTER = [c for c in COMMANDS if "executor=" in c or "launcher=" in c]
LOCAL_STAND_INS = {
    "hydra/launcher=submitit_slurm": ["hydra/launcher=submitit_local"],
    "hydra.launcher.partition": [],  # SLURM only
    "audit.slurm_partition": ["audit.submitit_cluster=local"],
}


def on_this_machine(overrides: list[str]) -> list[str]:
    """The command's overrides with each cluster-only setting replaced by its local stand-in."""
    out = []
    for override in overrides:
        key = override.split("=", 1)[0]
        stand_in = LOCAL_STAND_INS.get(override, LOCAL_STAND_INS.get(key))
        out += [override] if stand_in is None else stand_in
    return out


def first_two_points(command: str) -> list[str]:
    """A sweep command's overrides: its first swept key cut to two values, any other to one."""
    words = shlex.split(command)[1:]
    overrides = [w for w in words if w not in ("-m", "--multirun")]
    points = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            keep = 1 if any("," in p.split("=", 1)[1] for p in points) else 2
            values = list(override.sweep_string_iterator())[:keep]
            points.append(f"{override.get_key_element()}={','.join(values)}")
        else:
            points.append(override.input_line)
    return points


@pytest.fixture
def ray_head():
    """A one-CPU Ray head on this machine, for ``audit.ray_address=auto``."""
    pytest.importorskip("ray")
    ray = Path(sys.executable).with_name("ray")
    started = subprocess.run(
        [
            str(ray),
            "start",
            "--head",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    yield
    subprocess.run([str(ray), "stop", "--force"], capture_output=True, timeout=180)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in ON_A_CLUSTER if "launcher=" not in c])
def test_readme_audit_executor_command_runs_here(tmp_path, request, command):
    pytest.importorskip("ray" if "executor=ray" in command else "submitit")
    if "ray_address=auto" in command:
        request.getfixturevalue("ray_head")
    overrides = on_this_machine(tiny(overrides_of(command)))
    done = subprocess.run(
        [sys.executable, "-m", "dptrain", *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "complete"
    assert results["config"]["audit"]["executor"] in command


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in ON_A_CLUSTER if "launcher=" in c])
def test_readme_launcher_sweep_runs_here(tmp_path, command):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    overrides = on_this_machine(tiny(first_two_points(command)))
    done = subprocess.run(
        [sys.executable, "-m", "dptrain", "-m", *overrides, f"hydra.sweep.dir={sweep}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted(sweep.glob("*/results.json"))
    assert len(runs) == 2
    assert all(json.loads(r.read_text())["status"] == "complete" for r in runs)
    assert (sweep / "sweep_report.html").is_file()
