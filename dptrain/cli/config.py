"""Structured-config schemas for Hydra and the one conversion from Hydra config to library objects.

Every config group option names its schema (a library dataclass) in its defaults list, so a typo'd
key or a wrong type fails at composition, before any work, with the key named. `build_run_config`
is the only place a `DictConfig` becomes library objects: nothing Hydra crosses into the library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dptrain.audit.config import AuditConfig
from dptrain.cli.errors import config_value_message
from dptrain.data import builtin_path
from dptrain.data.image_folder import ImageFolderDataConfig
from dptrain.data.locate import shared_data_path
from dptrain.data.medmnist import MedMNISTDataConfig
from dptrain.data.mimic import MIMICDemoDataConfig
from dptrain.data.mitbih import MITBIHDataConfig
from dptrain.data.ptbxl import PTBXLDataConfig
from dptrain.data.splits import SplitConfig
from dptrain.data.tables import TableDataConfig
from dptrain.errors import ConfigError
from dptrain.models.registry import MODELS
from dptrain.pipeline import RunConfig
from dptrain.privacy.accounting import PrivacyConfig
from dptrain.tracking.base import NoTrackerConfig
from dptrain.tracking.local import CsvTrackerConfig
from dptrain.tracking.mlflow_tracker import MlflowTrackerConfig
from dptrain.tracking.wandb import WandbTrackerConfig
from dptrain.training.config import TrainConfig


@dataclass
class RootSchema:
    """The top level of the composed config; group nodes carry their own schemas."""

    data: Any = MISSING
    model: Any = MISSING
    privacy: Any = MISSING
    train: Any = MISSING
    audit: Any = MISSING
    tracker: Any = MISSING
    split: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 0
    name: str = "dptrain"


# Stored under schema/<group>/<name>; a group option extends one in its defaults list with
# `- /schema/<group>/<name>@_here_`.
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
SCHEMAS: dict[str, dict[str, type]] = {
    "data": {
        "table": TableDataConfig,
        "medmnist": MedMNISTDataConfig,
        "image_folder": ImageFolderDataConfig,
        "ptbxl": PTBXLDataConfig,
        "mitbih": MITBIHDataConfig,
        "mimic_iv_demo": MIMICDemoDataConfig,
    },
    "model": dict(MODELS),
    "privacy": {"privacy": PrivacyConfig},
    "train": {"train": TrainConfig},
    "audit": {"audit": AuditConfig},
    "tracker": {
        "wandb": WandbTrackerConfig,
        "mlflow": MlflowTrackerConfig,
        "csv": CsvTrackerConfig,
        "none": NoTrackerConfig,
    },
}


def register_schemas() -> None:
    """Registers the schemas with Hydra's ConfigStore and the ``builtin`` path resolver."""
    store = ConfigStore.instance()
    store.store(name="root_schema", node=RootSchema)
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=_open_mappings(schema))
    if not OmegaConf.has_resolver("builtin"):
        OmegaConf.register_new_resolver("builtin", builtin_path)
    if not OmegaConf.has_resolver("shared_data"):
        OmegaConf.register_new_resolver("shared_data", shared_data_path)
    if not OmegaConf.has_resolver("file_stem"):
        # A run over `visits.csv` is named `visits`, not `table`.
        OmegaConf.register_new_resolver(
            "file_stem", lambda path: Path(str(path)).name.split(".")[0]
        )


def _open_mappings(schema: type) -> Any:
    """The schema as a config node whose mapping fields (``data.subgroup_bins``) take new keys.

    A mapping's keys are the user's column names, so ``data.subgroup_bins={age:[0,40,120]}`` must
    work without Hydra's ``+`` (in struct mode a new key is "not in struct"); unknown keys of the
    schema itself are still refused.
    """
    if not dataclasses.is_dataclass(schema):
        return schema
    node = OmegaConf.structured(schema)
    for schema_field in dataclasses.fields(schema):
        if schema_field.default_factory is dict:
            OmegaConf.set_struct(node[schema_field.name], False)
    return node


def compose_run_config(overrides: list[str] | None = None) -> RunConfig:
    """The run config ``dptrain <overrides>`` would use, without running it (benchmarks, notebooks).

    Example:
        >>> compose_run_config(["privacy.epsilon=2"]).privacy.epsilon
        2.0
    """
    register_schemas()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return build_run_config(compose(config_name="config", overrides=overrides or []))[0]


def build_run_config(cfg: DictConfig) -> tuple[RunConfig, Any]:
    """Converts the composed config into library objects (validating each block eagerly).

    Returns:
        The run config and the tracker config (the tracker is opened by the CLI).
    """
    _refuse_unknown_keys(cfg)
    try:
        build = OmegaConf.to_object
        run_config = RunConfig(
            data=_expand_home(build(cfg.data)),
            model=build(cfg.model),
            privacy=build(cfg.privacy),
            train=build(cfg.train),
            audit=build(cfg.audit),
            split=build(cfg.split),
            seed=cfg.seed,
        )
        return run_config, build(cfg.tracker)
    except OmegaConfBaseException as error:  # a missing mandatory value, a value of a wrong type
        raise ConfigError(config_value_message(error)) from error


# Data config fields that hold a path, where a quoted ``~`` means the home directory as in a shell.
PATH_FIELDS = ("path", "root", "image_root", "patient_map")


def _expand_home(data_config: Any) -> Any:
    """The data config with ``~`` expanded in its path fields (``'data.path="~/visits.csv"'``)."""
    changes = {
        name: str(Path(value).expanduser())
        for name in PATH_FIELDS
        if isinstance(value := getattr(data_config, name, None), str) and value.startswith("~")
    }
    return dataclasses.replace(data_config, **changes) if changes else data_config


def _refuse_unknown_keys(cfg: DictConfig) -> None:
    """Refuses keys that no schema knows, such as ones added with ``+`` (``+privacy.epsilom=3``).

    Hydra's ``+`` adds a key even to a structured config, and the conversion to a dataclass then
    drops it, so a typo would run silently with the default.

    Raises:
        ConfigError: Naming the key and the valid keys of its block.
    """
    known_top = {field.name for field in dataclasses.fields(RootSchema)} | {"hydra"}
    for key in cfg:
        if key not in known_top:
            raise ConfigError(
                f"unknown config key {key!r}; top-level keys: {sorted(known_top - {'hydra'})}"
            )
    for group in (*SCHEMAS, "split"):
        node = cfg.get(group)
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if schema is None or not dataclasses.is_dataclass(schema):
            continue
        fields = {field.name for field in dataclasses.fields(schema)}
        unknown = sorted(set(node) - fields)
        if unknown:
            raise ConfigError(
                f"unknown config key {group}.{unknown[0]}; valid keys of {group}: {sorted(fields)}"
            )
