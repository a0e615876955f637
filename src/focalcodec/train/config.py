"""Training configuration: nested dataclasses filled from YAML and command-line overrides.

A recipe is one YAML file with one block per concern (``model``, ``data``, ``optim``, ...).
Every block maps onto a dataclass below, so a typo is an error that names the key and the
file instead of a silently ignored setting. Overrides use dot paths, for example
``optim.lr=1e-4`` or ``data.batch_size=4``; values are parsed as YAML scalars or lists.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files.audio import AUDIO_SUFFIXES

__all__ = [
    "DataConfig",
    "DiscriminatorConfig",
    "DistillConfig",
    "LogConfig",
    "LossConfig",
    "MelConfig",
    "ModelConfig",
    "OptimConfig",
    "STAGES",
    "TrainConfig",
    "TrainerConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
]

STAGES = ("quantizer", "decoder", "causal-encoder")


@dataclass
class ModelConfig:
    """Where the codec comes from.

    ``pretrained`` (a ``FocalCodec.from_pretrained`` source) wins over ``config`` (an
    architecture with random weights). ``load`` copies single slots from other pretrained
    codecs, e.g. ``{encoder: lucadellalib/focalcodec_50hz}`` to train a new compressor on an
    official WavLM. ``overrides`` edits the codec config with dot paths before building it.
    """

    config: str | None = None
    pretrained: str | None = None
    load: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Audio source, splits, crops and the optional feature cache."""

    source: str = ""
    root: str | None = None
    train_split: str | None = "train"
    valid_split: str | None = None
    valid_fraction: float = 0.05
    max_valid_items: int = 8
    valid_max_seconds: float | None = 6.0
    crop_samples: int | None = 7040
    min_seconds: float = 0.3
    max_items: int | None = None
    batch_size: int = 8
    valid_batch_size: int = 1
    num_workers: int = 0
    cache_features: bool = False
    cache_dir: str | None = None
    cache_dtype: str = "float32"
    extensions: list[str] = field(default_factory=lambda: list(AUDIO_SUFFIXES))


@dataclass
class OptimConfig:
    """AdamW with an optional learning-rate schedule.

    ``scheduler``: ``constant``; ``exponential`` (times ``gamma`` every ``interval``);
    ``plateau`` (times ``gamma`` after a validation whose monitored metric improved by
    less than ``threshold``, relative to the previous validation).
    """

    lr: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float | None = None
    scheduler: str = "constant"
    gamma: float = 0.999
    interval: str = "epoch"
    threshold: float = 0.0025


@dataclass
class MelConfig:
    """Log-mel spectrogram used by the mel loss and the validation metric."""

    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 100
    f_min: float = 0.0
    f_max: float | None = None


@dataclass
class LossConfig:
    """Loss weights of every stage; each stage reads the ones it uses."""

    feature_weight: float = 1.0
    feature_reduction: str = "mean"
    entropy_weight: float = 0.1
    entropy_temperature: float = 1.0
    diversity_weight: float = 1.0
    mel_weight: float = 45.0
    adversarial_weight: float = 1.0
    feature_matching_weight: float = 54.0
    mel: MelConfig = field(default_factory=MelConfig)


@dataclass
class DiscriminatorConfig:
    """Multi-period and multi-resolution discriminators of the decoder stage."""

    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    period_channels: list[int] = field(default_factory=lambda: [32, 128, 512, 1024])
    resolutions: list[list[int]] = field(
        default_factory=lambda: [[512, 128, 512], [1024, 256, 1024], [2048, 512, 2048]]
    )
    resolution_channels: int = 32
    warmup_steps: int = 0


@dataclass
class DistillConfig:
    """Causal-encoder distillation: the non-causal teacher and the student's start.

    ``teacher`` is a model block like ``model``; its encoder is the teacher.
    """

    teacher: ModelConfig = field(default_factory=ModelConfig)
    init_from_teacher: bool = True


@dataclass
class LogConfig:
    """Where and how often to report."""

    every: int = 10
    tensorboard: bool = False
    progress: bool = True


@dataclass
class TrainerConfig:
    """The shared loop: devices, precision, budget, checkpoints, validation.

    ``valid_every_epoch`` validates and checkpoints at the end of every epoch.
    ``monitor`` names the validation metric (lower is better) that drives the
    ``plateau`` scheduler; ``best_metric`` (default: ``monitor``) the one that
    ``early_stop_patience`` (stop after that many validations without a new best) and
    ``keep_best`` (keep the best weights in ``run_dir/best``) follow.
    """

    device: str = "auto"
    precision: str = "fp32"
    seed: int = 0
    max_steps: int | None = 1000
    max_epochs: int | None = None
    max_minutes: float | None = None
    valid_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    num_samples: int = 2
    export: bool = True
    deterministic: bool = False
    threads: int | None = None
    valid_every_epoch: bool = False
    monitor: str = "loss"
    best_metric: str | None = None
    early_stop_patience: int | None = None
    keep_best: bool = False


@dataclass
class TrainConfig:
    """A full recipe: which stage, which codec, which data and how to train it."""

    stage: str = "quantizer"
    run_dir: str = "runs/default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    disc_optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    log: LogConfig = field(default_factory=LogConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def validate(self) -> None:
        """Check values that the types alone cannot; raise ConfigError on the first."""
        _check(self.stage in STAGES, "stage", f"must be one of {', '.join(STAGES)}")
        _check(self.data.batch_size > 0, "data.batch_size", "must be positive")
        _check(
            self.data.valid_batch_size > 0, "data.valid_batch_size", "must be positive"
        )
        _check(
            0.0 <= self.data.valid_fraction < 1.0,
            "data.valid_fraction",
            "must be in [0, 1)",
        )
        crop = self.data.crop_samples
        _check(
            crop is None or crop > 0, "data.crop_samples", "must be positive or null"
        )
        _check(
            self.trainer.precision in ("fp32", "bf16", "fp16"),
            "trainer.precision",
            "must be fp32, bf16 or fp16",
        )
        _check(
            self.data.cache_dtype in ("float32", "float16", "bfloat16"),
            "data.cache_dtype",
            "must be float32, float16 or bfloat16",
        )
        _check(
            self.loss.feature_reduction in ("mean", "sum"),
            "loss.feature_reduction",
            "must be mean or sum",
        )
        for name in ("optim", "disc_optim"):
            opt = getattr(self, name)
            _check(
                opt.scheduler in ("constant", "exponential", "plateau"),
                f"{name}.scheduler",
                "must be constant, exponential or plateau",
            )
            _check(
                opt.interval in ("epoch", "step"),
                f"{name}.interval",
                "must be epoch or step",
            )
            _check(len(opt.betas) == 2, f"{name}.betas", "needs two values")
        for res in self.discriminator.resolutions:
            _check(
                len(res) == 3,
                "discriminator.resolutions",
                "each entry is [n_fft, hop_length, win_length]",
            )
        _check(self.log.every > 0, "log.every", "must be positive")
        patience = self.trainer.early_stop_patience
        _check(
            patience is None or patience > 0,
            "trainer.early_stop_patience",
            "must be positive or null",
        )


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' {message}")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (for YAML/JSON dumps and checkpoints)."""
    return dataclasses.asdict(cfg)


def config_from_dict(
    data: dict[str, Any], cls: type = TrainConfig, where: str = ""
) -> Any:
    """Build ``cls`` from a nested dict, checking every key and value type.

    Parameters
    ----------
    data
        Nested mapping, as read from YAML.
    cls
        The dataclass to build.
    where
        Dot path of ``data`` inside the whole config, for error messages.

    Returns
    -------
        An instance of ``cls``; missing keys keep their defaults.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config block '{where or '<root>'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(
                f"unknown config key '{path}'; valid keys here: {', '.join(names)}"
            )
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Convert a YAML value to the annotated type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return config_from_dict(value if value is not None else {}, hint, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{path}' must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{path}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, hint, path)


def _coerce_scalar(value: Any, hint: Any, path: str) -> Any:
    if hint is Any:
        return value
    # bool is an int subclass: keep True out of int/float fields and 1 out of bools.
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        # PyYAML reads "1e-4" (no dot) as a string; accept numeric strings here.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key '{path}' must be {name}, got {value!r}")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a nested dict (a modified copy is returned).

    The value is parsed as YAML, so ``3``, ``1e-4``, ``true``, ``null`` and ``[1, 2]`` get
    their natural types. Missing intermediate mappings are created.
    """
    import yaml

    data = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' is not of the form key.path=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': value is not valid YAML") from exc
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a mapping")
            node = child
        node[parts[-1]] = value
    return data


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def read_recipe(path: str | Path | None, what: str = "config file") -> dict[str, Any]:
    """The mapping of a YAML recipe (``{}`` for None or an empty file); a missing file,
    bad YAML or another top level is a :class:`~focalcodec.errors.ConfigError`. Shared
    by the training, token-LM and probe recipes."""
    import yaml

    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded or {}


def load_config(
    path: str | Path | None,
    overrides: list[str] | None = None,
    stage: str | None = None,
) -> TrainConfig:
    """Read a YAML recipe, apply overrides and validate it.

    Parameters
    ----------
    path
        YAML file, or None to start from the defaults.
    overrides
        ``key.path=value`` strings applied after the file.
    stage
        The stage being run: fills in a missing ``stage`` key, and a recipe written
        for another stage is refused (it is almost surely the wrong file).

    Returns
    -------
        The validated :class:`TrainConfig`.
    """
    data = read_recipe(path)
    if stage is not None:
        written = data.setdefault("stage", stage)
        if written != stage:
            raise ConfigError(
                f"{path} is a '{written}' recipe; run 'focalcodec train {written}'"
            )
    data = apply_overrides(data, list(overrides or []))
    try:
        cfg = config_from_dict(data)
        cfg.validate()
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from exc
    return cfg
