"""Robustness instance files for ``mipcert compare``: a network, test points, radii, methods.

Layout (strict keys: a misspelt key is an error that names the valid ones; paths are relative
to the instance file)::

    name = "digits_mlp_robustness"            # optional
    description = "..."                       # optional

    [network]
    path = "../models/digits_mlp.onnx"        # .onnx or mipcert .npz

    [data]
    source = "digits"                         # sklearn digits, pixels / 16 in [0, 1] ...
    split = "test"                            # ... "test" or "train" part of
    test_size = 0.25                          #     train_test_split(X, y, test_size,
    random_state = 0                          #     random_state, stratify=y if stratify)
    stratify = true
    first = 20                                # the first N points (optional: all)
    # or: source = "points" with  points = "file.npz"  holding X (n, d) and y (n,)

    [property]
    kind = "cr"                               # cr (= "robustness") | targeted | sr | lr | scr
                                              # | fairness (docs/properties.md)
    eps = [0.01, 0.03, 0.05]                  # l_inf radii (one number or a list, each >= 0)
    input_lo = 0.0                            # input domain, intersected with every ball
    input_hi = 1.0
    # targeted: target = 3     sr: delta = 0.5     lr: L = 20.0     scr: eta = 0.9
    # fairness: sensitive = [0, 1] and values = [[0, 1], [0, 1]] or interval = [[0, 1], [0, 1]]

    [methods]
    use = ["ibp", "crown", "lp", "milp"]

    [solver]
    name = "highs"                            # highs | scip | gurobi
    timeout = 30.0                            # seconds per MILP (one point at one eps)
    threads = 1
    seed = 0                                  # seed of the falsification attack
"""
from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..tomlconf import check_keys, get_typed, load_toml, resolve_path

METHODS = ("ibp", "crown", "lp", "milp")
SOLVERS = ("highs", "scip", "gurobi")
SOURCES = ("digits", "points")

_TOP_KEYS = {"name", "description", "network", "data", "property", "methods", "solver"}
_DATA_KEYS = {"digits": {"source", "split", "test_size", "random_state", "stratify", "first"},
              "points": {"source", "points", "first"}}
_PROPERTY_KEYS = {"kind", "eps", "input_lo", "input_hi"}
#: the extra keys each property kind takes (see mipcert.verify.props)
_KIND_KEYS = {"robustness": set(), "cr": set(), "targeted": {"target"}, "sr": {"delta"},
              "lr": {"L"}, "scr": {"eta"}, "fairness": {"sensitive", "values", "interval"}}
_SOLVER_KEYS = {"name", "timeout", "threads", "seed"}


@dataclass
class DataConfig:
    """Where the test points come from (see the module docstring)."""

    source: str = "digits"
    split: str = "test"
    test_size: float = 0.25
    random_state: int = 0
    stratify: bool = True
    points: str | None = None   # resolved path of a .npz for source = "points"
    first: int | None = None


@dataclass
class RobustnessInstance:
    """A parsed instance file; ``load_points`` gives the test points ``(X (n, d), y (n,))``."""

    name: str
    network_path: str
    data: DataConfig
    eps: list[float]
    methods: list[str]
    input_lo: float = 0.0
    input_hi: float = 1.0
    solver: str = "highs"
    timeout: float | None = 30.0
    threads: int | None = 1
    seed: int = 0
    description: str = ""
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    prop: Any = None            # a mipcert.verify.props.PropertyConfig (None: CR)

    @property
    def kind(self) -> str:
        return "cr" if self.prop is None else self.prop.kind

    def as_dict(self) -> dict:
        return asdict(self)

    def load_points(self) -> tuple[np.ndarray, np.ndarray]:
        """The test points: ``X`` ``(n, d)`` float64 and integer labels ``y`` ``(n,)``."""
        return load_points(self.data)


_get = get_typed


def _section(doc: dict, name: str, required: bool) -> dict:
    t = doc.get(name)
    if t is None:
        if required:
            raise InputError(f"the instance needs a [{name}] section")
        return {}
    if not isinstance(t, dict):
        raise InputError(f"{name} must be a section ([{name}]), not a value")
    return t


def _positive_int(t: dict, key: str, where: str) -> int | None:
    v = _get(t, key, int, where)
    if v is not None and v < 1:
        raise InputError(f"[{where}] {key} = {v} must be >= 1")
    return v


def _parse_data(t: dict, base: Path) -> DataConfig:
    source = _get(t, "source", str, "data", "digits")
    if source not in SOURCES:
        raise InputError(f"[data] source = {source!r}; choose one of {', '.join(SOURCES)}")
    check_keys(t, _DATA_KEYS[source], "data")
    cfg = DataConfig(source=source, first=_positive_int(t, "first", "data"))
    if source == "points":
        rel = _get(t, "points", str, "data", required=True)
        p = resolve_path(rel, base)
        if not p.is_file():
            raise InputError(f"[data] points = {rel!r}: file {p} does not exist")
        cfg.points = str(p)
        return cfg
    cfg.split = _get(t, "split", str, "data", "test")
    if cfg.split not in ("test", "train"):
        raise InputError(f"[data] split = {cfg.split!r}; choose test or train")
    cfg.test_size = _get(t, "test_size", float, "data", 0.25)
    if not 0 < cfg.test_size < 1:
        raise InputError(f"[data] test_size = {cfg.test_size} must be in (0, 1)")
    cfg.random_state = _get(t, "random_state", int, "data", 0)
    cfg.stratify = _get(t, "stratify", bool, "data", True)
    return cfg


def _parse_eps(t: dict) -> list[float]:
    if "eps" not in t:
        raise InputError("[property] needs the key 'eps' (a radius or a list of radii)")
    raw = t["eps"]
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise InputError("[property] eps = [] lists no radius; give at least one, e.g. [0.01]")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"[property] eps = {raw!r}: {v!r} is not a number")
        if not np.isfinite(v) or v < 0:
            raise InputError(f"[property] eps = {raw!r}: every radius must be a finite "
                             f"number >= 0, got {v}")
        out.append(float(v))
    return sorted(set(out))


def _number_lists(t: dict, key: str, where: str = "property"):
    """``[[numbers], ...]`` or ``None``; an error naming the key otherwise."""
    if key not in t:
        return None
    v = t[key]
    ok = isinstance(v, list) and all(
        isinstance(r, list) and r and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                          for a in r) for r in v)
    if not ok or not v:
        raise InputError(f"[{where}] {key} = {v!r} must be a list of lists of numbers, one "
                         "list per sensitive feature, e.g. [[0, 1]]")
    return [[float(a) for a in r] for r in v]


def _parse_property(t: dict) -> tuple[list[float], float, float, Any]:
    from .props import PropertyConfig

    kind = _get(t, "kind", str, "property", "cr")
    if kind not in _KIND_KEYS:
        raise InputError(f"[property] kind = {kind!r}: choose one of "
                         f"{', '.join(k for k in _KIND_KEYS if k != 'robustness')}")
    check_keys(t, _PROPERTY_KEYS | _KIND_KEYS[kind], "property")
    lo = _get(t, "input_lo", float, "property", 0.0)
    hi = _get(t, "input_hi", float, "property", 1.0)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InputError(f"[property] input_lo = {lo} and input_hi = {hi} must be finite "
                         "with input_lo < input_hi")
    sensitive = t.get("sensitive", [])
    if not isinstance(sensitive, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                  for i in sensitive):
        raise InputError(f"[property] sensitive = {sensitive!r} must be a list of input indices")
    config = PropertyConfig(
        kind=kind, target=_get(t, "target", int, "property"),
        delta=_get(t, "delta", float, "property"), L=_get(t, "L", float, "property"),
        eta=_get(t, "eta", float, "property"), sensitive=list(sensitive),
        values=_number_lists(t, "values"), interval=_number_lists(t, "interval"))
    if config.delta is not None and not config.delta > 0:
        raise InputError(f"[property] delta = {config.delta} must be > 0")
    if config.L is not None and not config.L >= 0:
        raise InputError(f"[property] L = {config.L} must be >= 0")
    if config.eta is not None and not 0.5 < config.eta < 1:
        raise InputError(f"[property] eta = {config.eta} must lie in (0.5, 1)")
    if kind == "fairness" and (config.values is None) == (config.interval is None):
        raise InputError("[property] kind = 'fairness' needs exactly one of 'values' (the values "
                         "of each sensitive feature) or 'interval' ([a, b] per sensitive feature)")
    return _parse_eps(t), lo, hi, config


def parse_methods(value, where: str = "[methods] use") -> list[str]:
    """A list (or comma-separated string) of method names, checked, in canonical order."""
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InputError(f"{where} must list at least one of {', '.join(METHODS)}")
    bad = [m for m in items if not isinstance(m, str) or m.lower() not in METHODS]
    if bad:
        raise InputError(f"{where}: unknown method{'s' if len(bad) > 1 else ''} "
                         f"{', '.join(map(repr, bad))}; choose from {', '.join(METHODS)}")
    chosen = {m.lower() for m in items}
    return [m for m in METHODS if m in chosen]


def _parse_solver(t: dict) -> dict:
    check_keys(t, _SOLVER_KEYS, "solver")
    name = _get(t, "name", str, "solver", "highs")
    if name not in SOLVERS:
        raise InputError(f"[solver] name = {name!r}; choose one of {', '.join(SOLVERS)}")
    timeout = _get(t, "timeout", float, "solver", 30.0)
    if not timeout > 0:
        raise InputError(f"[solver] timeout = {timeout} must be > 0 seconds")
    threads = _get(t, "threads", int, "solver", 1)
    if threads < 1:
        raise InputError(f"[solver] threads = {threads} must be >= 1")
    seed = _get(t, "seed", int, "solver", 0)
    if seed < 0:
        raise InputError(f"[solver] seed = {seed} must be >= 0")
    return {"solver": name, "timeout": timeout, "threads": threads, "seed": seed}


def parse_instance(doc: dict, base: Path = Path("."), name: str = "instance",
                   path: str | None = None) -> RobustnessInstance:
    """Build a :class:`RobustnessInstance` from a parsed TOML document (strict keys)."""
    check_keys(doc, _TOP_KEYS, "top level")
    net = _section(doc, "network", True)
    check_keys(net, {"path"}, "network")
    rel = _get(net, "path", str, "network", required=True)
    net_path = resolve_path(rel, base)
    if not net_path.is_file():
        raise InputError(f"[network] path = {rel!r}: file {net_path} does not exist")
    data = _parse_data(_section(doc, "data", True), base)
    eps, lo, hi, prop = _parse_property(_section(doc, "property", True))
    meth = _section(doc, "methods", False)
    check_keys(meth, {"use"}, "methods")
    methods = parse_methods(meth.get("use", list(METHODS)))
    return RobustnessInstance(
        name=_get(doc, "name", str, "top level", name), network_path=str(net_path), data=data,
        eps=eps, methods=methods, input_lo=lo, input_hi=hi, prop=prop,
        description=_get(doc, "description", str, "top level", ""), path=path,
        **_parse_solver(_section(doc, "solver", False)))


def load_instance(path) -> RobustnessInstance:
    """Read and check a robustness instance file."""
    path = Path(path)
    return parse_instance(load_toml(path), base=path.resolve().parent, name=path.stem,
                          path=str(path))


def load_points(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(X (n, d) float64, y (n,) int64)`` for a :class:`DataConfig`, cut to ``first``."""
    if cfg.source == "points":
        try:
            with np.load(cfg.points, allow_pickle=False) as z:
                if "X" not in z.files or "y" not in z.files:
                    raise InputError(f"[data] points file {cfg.points} must hold arrays 'X' "
                                     f"(n, d) and 'y' (n,); it has {', '.join(z.files)}")
                X, y = np.asarray(z["X"], np.float64), np.asarray(z["y"])
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(f"[data] cannot read points file {cfg.points} (a .npz with X "
                             f"and y): {exc}") from None
        if X.ndim == 0 or len(X) == 0:
            raise InputError(f"[data] points file {cfg.points} holds no points")
        X = X.reshape(len(X), -1)
        if not np.all(np.isfinite(X)):
            raise InputError(f"[data] points file {cfg.points}: X holds NaN or infinite values")
        if len(y) != len(X) or not np.all(np.equal(np.mod(y, 1), 0)):
            raise InputError(f"[data] points file {cfg.points}: y must hold one integer "
                             f"class per row of X ({len(X)} rows, {len(y)} labels)")
        y = y.astype(np.int64)
    else:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        Xa, ya = load_digits(return_X_y=True)
        Xa = Xa / 16.0
        Xtr, Xte, ytr, yte = train_test_split(Xa, ya, test_size=cfg.test_size,
                                              random_state=cfg.random_state,
                                              stratify=ya if cfg.stratify else None)
        X, y = (Xte, yte) if cfg.split == "test" else (Xtr, ytr)
        X, y = np.asarray(X, np.float64), np.asarray(y, np.int64)
    if cfg.first is not None:
        X, y = X[: cfg.first], y[: cfg.first]
    if len(X) == 0:
        raise InputError("[data] selects no test points")
    return X, y
