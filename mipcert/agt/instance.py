"""AGT instance files: a training run and a threat model, read with strict keys.

Sections ``[data]``, ``[model]``, ``[training]``, ``[perturbation]`` and an optional
``[privacy]``; see ``docs/agt.md`` for every key. Every misspelt key is refused by name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..network.training import LOSSES
from ..tomlconf import check_keys, get_typed, load_toml, resolve_path

SOURCES = ("moons", "blobs", "digits", "breast_cancer", "diabetes")
FEATURES = ("identity", "poly2", "poly3")
LABELS = ("pm1", "index", "value")
SCALES = ("none", "standard", "minmax")
KINDS = ("none", "bounded", "label_flip", "removal", "substitution")

_GENERATOR_KEYS = {
    "moons": {"n_samples", "noise", "random_state"},
    "blobs": {"n_samples", "centers", "n_features", "cluster_std", "random_state"},
    "digits": {"classes"},
    "breast_cancer": set(),
    "diabetes": set(),
    "file": {"target_column"},
}
_DATA_KEYS = {"source", "features", "labels", "scale", "scale_y", "test_fraction", "n_test",
              "split_seed"}


@dataclass
class DataConfig:
    source: str
    features: str = "identity"
    labels: str = "index"
    scale: str = "none"
    scale_y: bool = False
    test_fraction: float = 0.25
    n_test: int | None = None
    split_seed: int = 0
    generator: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # resolved file path for .npz / .csv sources


@dataclass
class ModelConfig:
    hidden: list[int] = field(default_factory=list)
    bias: bool = True
    init: str = "normal"
    init_seed: int = 0
    init_std: float | None = None
    init_file: str | None = None


@dataclass
class TrainingConfig:
    loss: str
    lr: float
    batch_size: int
    epochs: int
    lr_decay: float = 0.0
    order: str = "sequential"
    shuffle_seed: int = 0
    clip: float | None = None
    drop_last: bool = False


@dataclass
class PerturbationConfig:
    """FORMULATIONS 3.2 with a per-batch budget ``k`` (a sound relaxation of a global ``k``)."""

    kind: str = "none"
    k: int = 0
    eps: float = 0.0
    nu: float = 0.0
    flips: bool = False

    @property
    def is_zero(self) -> bool:
        """True when the model admits only the nominal data set."""
        if self.kind == "none" or self.k == 0:
            return True
        if self.kind == "bounded":
            return self.eps == 0 and self.nu == 0 and not self.flips
        return False


@dataclass
class PrivacyConfig:
    k_values: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20])
    epsilons: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0, 2.0, 5.0])


@dataclass
class Instance:
    name: str
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    perturbation: PerturbationConfig
    privacy: PrivacyConfig | None = None
    base: Path = Path(".")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["base"] = str(self.base)
        return d


_get = get_typed


def _choice(value: str, options, key: str, where: str) -> str:
    if value not in options:
        raise InputError(f"[{where}] {key} = {value!r}; choose one of {', '.join(options)}")
    return value


def _parse_data(t: dict, base: Path) -> DataConfig:
    source = _get(t, "source", str, "data", required=True)
    is_file = source.endswith((".npz", ".csv"))
    kind = "file" if is_file else _choice(source, SOURCES, "source", "data")
    check_keys(t, _DATA_KEYS | _GENERATOR_KEYS[kind], "data")
    gen = {k: t[k] for k in _GENERATOR_KEYS[kind] if k in t}
    cfg = DataConfig(
        source=kind,
        features=_choice(_get(t, "features", str, "data", "identity"), FEATURES, "features", "data"),
        labels=_choice(_get(t, "labels", str, "data", "index"), LABELS, "labels", "data"),
        scale=_choice(_get(t, "scale", str, "data", "none"), SCALES, "scale", "data"),
        scale_y=_get(t, "scale_y", bool, "data", False),
        test_fraction=_get(t, "test_fraction", float, "data", 0.25),
        n_test=_get(t, "n_test", int, "data"),
        split_seed=_get(t, "split_seed", int, "data", 0),
        generator=gen,
        path=str(resolve_path(source, base)) if is_file else None)
    if not 0 <= cfg.test_fraction < 1:
        raise InputError(f"[data] test_fraction = {cfg.test_fraction} must be in [0, 1)")
    if cfg.n_test is not None and cfg.n_test < 0:
        raise InputError(f"[data] n_test = {cfg.n_test} must be >= 0")
    return cfg


def _parse_model(t: dict, base: Path) -> ModelConfig:
    check_keys(t, {"hidden", "bias", "init", "init_seed", "init_std", "init_file"}, "model")
    hidden = _get(t, "hidden", list, "model", [])
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise InputError(f"[model] hidden = {hidden!r} must be a list of positive widths")
    init = _choice(_get(t, "init", str, "model", "normal"), ("zeros", "normal", "file"),
                   "init", "model")
    init_file = _get(t, "init_file", str, "model")
    if init == "file" and init_file is None:
        raise InputError("[model] init = 'file' needs init_file = 'PATH.npz' (key 'theta')")
    std = _get(t, "init_std", float, "model")
    if std is not None and std < 0:
        raise InputError(f"[model] init_std = {std} must be >= 0")
    return ModelConfig(hidden=hidden, bias=_get(t, "bias", bool, "model", True), init=init,
                       init_seed=_get(t, "init_seed", int, "model", 0), init_std=std,
                       init_file=str(resolve_path(init_file, base)) if init_file else None)


def _parse_training(t: dict) -> TrainingConfig:
    check_keys(t, {"loss", "lr", "lr_decay", "batch_size", "epochs", "order", "shuffle_seed",
                   "clip", "drop_last"}, "training")
    cfg = TrainingConfig(
        loss=_choice(_get(t, "loss", str, "training", required=True), LOSSES, "loss", "training"),
        lr=_get(t, "lr", float, "training", required=True),
        batch_size=_get(t, "batch_size", int, "training", required=True),
        epochs=_get(t, "epochs", int, "training", required=True),
        lr_decay=_get(t, "lr_decay", float, "training", 0.0),
        order=_choice(_get(t, "order", str, "training", "sequential"), ("sequential", "shuffle"),
                      "order", "training"),
        shuffle_seed=_get(t, "shuffle_seed", int, "training", 0),
        clip=_get(t, "clip", float, "training"),
        drop_last=_get(t, "drop_last", bool, "training", False))
    if cfg.lr <= 0 or cfg.lr_decay < 0:
        raise InputError("[training] lr must be > 0 and lr_decay >= 0")
    if cfg.batch_size < 1 or cfg.epochs < 1:
        raise InputError("[training] batch_size and epochs must be >= 1")
    if cfg.clip is not None and cfg.clip <= 0:
        raise InputError(f"[training] clip = {cfg.clip} (gamma) must be > 0")
    return cfg


def _parse_perturbation(t: dict) -> PerturbationConfig:
    kind = _choice(_get(t, "kind", str, "perturbation", "none"), KINDS, "kind", "perturbation")
    allowed = {"none": {"kind"}, "bounded": {"kind", "k", "eps", "nu", "flips"},
               "label_flip": {"kind", "k"}, "removal": {"kind", "k"},
               "substitution": {"kind", "k"}}[kind]
    check_keys(t, allowed, "perturbation")
    cfg = PerturbationConfig(kind=kind, k=_get(t, "k", int, "perturbation", 0),
                             eps=_get(t, "eps", float, "perturbation", 0.0),
                             nu=_get(t, "nu", float, "perturbation", 0.0),
                             flips=_get(t, "flips", bool, "perturbation", False))
    if kind == "label_flip":
        cfg.flips = True
    if cfg.k < 0:
        raise InputError(f"[perturbation] k = {cfg.k} must be >= 0")
    if cfg.eps < 0 or cfg.nu < 0:
        raise InputError(f"[perturbation] eps = {cfg.eps} and nu = {cfg.nu} must be >= 0 "
                         "(they are radii of the allowed change)")
    return cfg


def _parse_privacy(t: dict) -> PrivacyConfig:
    check_keys(t, {"k_values", "epsilons"}, "privacy")
    cfg = PrivacyConfig()
    if "k_values" in t:
        cfg.k_values = sorted(set(_get(t, "k_values", list, "privacy")))
    if "epsilons" in t:
        cfg.epsilons = [float(e) for e in _get(t, "epsilons", list, "privacy")]
    if not cfg.k_values or any(not isinstance(k, int) or k < 1 for k in cfg.k_values):
        raise InputError("[privacy] k_values must be a non-empty list of integers >= 1")
    if not cfg.epsilons or any(e <= 0 for e in cfg.epsilons):
        raise InputError("[privacy] epsilons must be a non-empty list of budgets > 0")
    return cfg


def parse_instance(doc: dict, base: Path = Path("."), name: str = "instance") -> Instance:
    """Build an :class:`Instance` from a parsed TOML document (strict keys)."""
    check_keys(doc, {"name", "description", "data", "model", "training", "perturbation",
                     "privacy"}, "top level")
    for sec in ("data", "training"):
        if not isinstance(doc.get(sec), dict):
            raise InputError(f"the instance needs a [{sec}] section")
    inst = Instance(
        name=str(doc.get("name", name)), data=_parse_data(doc["data"], base),
        model=_parse_model(doc.get("model", {}), base),
        training=_parse_training(doc["training"]),
        perturbation=_parse_perturbation(doc.get("perturbation", {})),
        privacy=_parse_privacy(doc["privacy"]) if "privacy" in doc else None, base=base)
    _cross_check(inst)
    return inst


def _cross_check(inst: Instance) -> None:
    loss, labels, p = inst.training.loss, inst.data.labels, inst.perturbation
    need = {"hinge": ("pm1",), "bce": ("index",), "cross_entropy": ("index",),
            "squared": ("value", "pm1")}[loss]
    if labels not in need:
        raise InputError(f"loss {loss!r} needs [data] labels = {' or '.join(map(repr, need))}, "
                         f"not {labels!r}")
    if p.k > inst.training.batch_size:
        raise InputError(f"[perturbation] k = {p.k} is larger than the batch size "
                         f"{inst.training.batch_size}: the budget is per batch")
    if p.kind == "removal" and p.k >= inst.training.batch_size:
        raise InputError(f"[perturbation] removal of k = {p.k} could empty a batch of "
                         f"{inst.training.batch_size}: use k < batch_size")
    if p.kind == "substitution" and inst.training.clip is None:
        raise InputError("substitution needs clipped gradients: set [training] clip = GAMMA "
                         "(each substituted sample then moves the sum by at most gamma)")
    if p.kind == "bounded" and p.nu > 0 and labels != "value":
        raise InputError("[perturbation] nu bounds changes of real-valued labels; use "
                         "flips = true for classification labels")
    if p.flips and labels == "value":
        raise InputError(f"[perturbation] kind = {p.kind!r} flips classification labels; for "
                         "real-valued labels use kind = 'bounded' with nu")
    if inst.privacy is not None and p.kind != "substitution":
        raise InputError("[privacy] needs [perturbation] kind = 'substitution' (neighbouring "
                         "data sets differ by substituted points)")


def load_instance(path) -> Instance:
    """Read and check an instance file."""
    path = Path(path)
    return parse_instance(load_toml(path), base=path.resolve().parent, name=path.stem)
