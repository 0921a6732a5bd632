"""The plugin contract kit: the same checks over every registered architecture.

A plugin author runs it in their own repository, with their plugin installed (an entry point in
``zoo.plugins``) or in a plugin folder::

    pytest --pyargs zoo.testing                              # every registered plugin
    pytest --pyargs zoo.testing --zoo-plugin my_nets         # only the plugin named my_nets
    ZOO_PLUGIN_DIR=~/my_plugins pytest --pyargs zoo.testing  # plugins from a folder too
    pytest --zoo-contract                                    # the kit alongside your own tests

For every architecture, on each data kind it declares (with the smallest registered dataset of
that kind it accepts, both at their ``smoke`` settings, on one batch of 16 examples, on the CPU):

=================  ===================================================================
check              passes when
=================  ===================================================================
builds             ``build(info, **defaults)`` returns a ``torch.nn.Module`` whose
                   output on one batch has the shape the task expects
output shape       the same with the ``smoke`` settings: classification
                   ``(*target.shape, classes)``, e.g. ``(B, C)`` or ``(B, T, C)``;
                   next_token ``(B, T, vocab)``; regression the target's shape;
                   reconstruction and anomaly the input's shape (or it flattened)
gradients          one backward pass gives every trainable parameter a finite,
                   not entirely zero gradient
overfit            Adam (lr 0.01) on that one batch cuts the loss by >= 90% within
                   300 steps (loss measured in eval mode before and after)
state_dict         a fresh build with another seed, loaded with the state_dict (saved
                   and loaded with ``torch.save``/``torch.load(weights_only=True)``),
                   gives identical outputs
determinism        two builds with the same seed give identical parameters and outputs
hydra              ``model=<name>`` composes to the defaults, and passing every default
                   back as an override string (``model.k=v``) gives the same values
=================  ===================================================================

plus, per plugin, ``loads`` (it imported and its hooks returned valid declarations) and, per
dataset, ``loads`` (its ``smoke`` settings give non-empty splits that match its declaration).

A failure is one line naming the plugin, the architecture, the check and the numbers::

    contract[broken:wrong_shape_net] output shape: expected (16, 3), got (16, 2) for data=iris ...

Importing this module is cheap (pytest imports it in every run through the ``pytest11`` entry
point): torch, Hydra and the registry are imported only when contract tests are collected, and
it adds tests only to a run that asks for them (``--pyargs zoo.testing``, ``--zoo-contract``, or a
test module that imports the ``test_*`` functions below; such a module may set
``zoo_contract_plugin_dirs = [...]`` to choose the plugin folders instead of ``ZOO_PLUGIN_DIR``).
The documentation is ``docs/plugin-contract.md``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BATCH = 16          # examples in the one batch every check uses
STEPS = 300         # the most optimizer steps the overfit check takes (it stops once the loss is low enough)
LR = 1e-2           # Adam's learning rate for the overfit check
DROP = 0.90         # the fraction of the loss the overfit check must remove
EVAL_EVERY = 10     # the overfit check measures the eval-mode loss every this many steps
SEED = 0

# Argument names a test function takes to be parametrized by the kit.
PARAMS = ("zoo_plugin", "zoo_dataset", "zoo_arch", "zoo_case")


class ContractFailure(AssertionError):
    """A plugin broke the contract; the message is one line naming plugin, check and numbers."""


class _Skip(Exception):
    pass


# ====================================================================================== pytest

def pytest_addoption(parser) -> None:
    group = parser.getgroup("zoo", "Zoo plugin contract kit (zoo.testing)")
    group.addoption("--zoo-contract", action="store_true", default=False,
                    help="add the contract checks over every registered architecture to this run")
    group.addoption("--zoo-plugin-dir", action="append", default=[], metavar="DIR",
                    help="a folder of *.py plugins to check as well (repeatable; default: ZOO_PLUGIN_DIR)")
    group.addoption("--zoo-plugin", action="append", default=[], metavar="NAME",
                    help="check only the plugin with this name (repeatable; `zoo list` shows the names)")


def pytest_configure(config) -> None:
    # The generating hook lives on an object, not at module level: when this module is also
    # collected as a test module (`--pyargs zoo.testing`) pytest would otherwise call a
    # module-level pytest_generate_tests twice (once as a plugin, once as the module's own).
    if not config.pluginmanager.has_plugin("zoo_contract_generator"):
        config.pluginmanager.register(_Generator(config), "zoo_contract_generator")
    if config.getoption("zoo_contract", False) and __file__ not in config.args:
        config.args.append(__file__)


class _Generator:
    def __init__(self, config):
        self.config = config

    def pytest_generate_tests(self, metafunc) -> None:
        wanted = [p for p in PARAMS if p in metafunc.fixturenames]
        if not wanted:
            return
        dirs = getattr(metafunc.module, "zoo_contract_plugin_dirs", None)
        if dirs is None:
            dirs = self.config.getoption("zoo_plugin_dir", None) or _env_dirs()
        only = tuple(self.config.getoption("zoo_plugin", None) or ())
        kit = Kit.get(tuple(str(d) for d in dirs), only)
        for name in wanted:
            params = kit.params(name)
            metafunc.parametrize(name, params, ids=[_id(p) for p in params])


def _env_dirs() -> list[str]:
    value = os.environ.get("ZOO_PLUGIN_DIR", "")  # one folder, as for `zoo train`
    return [value] if value else []


def _id(param) -> str:
    return param.id if hasattr(param, "id") else str(param)


def _run(param, check: str) -> None:
    """Run one check and turn a contract failure into a one-line pytest failure."""
    failure = skip = None
    try:
        param.kit.run(param, check)
    except ContractFailure as exc:
        failure = str(exc)
    except _Skip as exc:
        skip = str(exc)
    if failure:  # outside the except block: pytest shows the one line, not a chained traceback
        pytest.fail(failure, pytrace=False)
    if skip:
        pytest.skip(skip)


# ------------------------------------------------------------------------------- the checks

def test_plugin_loads(zoo_plugin):
    """The plugin imported, registered and returned valid declarations."""
    _run(zoo_plugin, "loads")


def test_dataset_loads(zoo_dataset):
    """The dataset loads at its smoke settings into non-empty splits matching its declaration."""
    _run(zoo_dataset, "loads")


def test_builds_from_defaults(zoo_case):
    _run(zoo_case, "builds")


def test_output_shape(zoo_case):
    _run(zoo_case, "output shape")


def test_gradients(zoo_case):
    _run(zoo_case, "gradients")


def test_overfit_one_batch(zoo_case):
    _run(zoo_case, "overfit")


def test_state_dict_round_trip(zoo_case):
    _run(zoo_case, "state_dict")


def test_deterministic(zoo_case):
    _run(zoo_case, "determinism")


def test_hydra_round_trip(zoo_arch):
    _run(zoo_arch, "hydra")


# ================================================================================= the kit

@dataclass(frozen=True)
class Param:
    """One parameter of a generated test: a plugin, a dataset, an architecture or a case."""

    kit: "Kit" = field(repr=False, compare=False)
    what: str                       # "plugin", "dataset", "arch", "case" or "error"
    plugin: str
    name: str = ""                  # the dataset's or architecture's name
    kind: str = ""                  # the data kind of a case
    error: str = ""

    @property
    def id(self) -> str:
        if self.what == "plugin" or self.what == "error":
            return self.plugin
        if self.what == "case":
            return f"{self.plugin}:{self.name}-{self.kind}"
        return f"{self.plugin}:{self.name}"

    @property
    def label(self) -> str:
        return f"contract[{self.id if self.what != 'case' else f'{self.plugin}:{self.name}'}]"


class Kit:
    """The registry to check and everything loaded from it, shared by all generated tests."""

    _instances: dict[tuple, "Kit"] = {}

    @classmethod
    def get(cls, plugin_dirs: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> "Kit":
        key = (plugin_dirs, only)
        if key not in cls._instances:
            cls._instances[key] = cls(plugin_dirs, only)
        return cls._instances[key]

    def __init__(self, plugin_dirs: tuple[str, ...] = (), only: tuple[str, ...] = ()):
        from zoo.errors import ZooError
        from zoo.plugin.registry import load_registry

        self.plugin_dirs, self.only = plugin_dirs, only
        self.error = ""
        try:
            self.registry = load_registry(plugin_dirs, strict=False)
        except ZooError as exc:
            self.registry, self.error = None, f"the plugins cannot be loaded: {exc}"
        self._data: dict[str, Any] = {}     # dataset name -> Splits or the error message

    # ---- what to test

    def _selected(self, plugin: str) -> bool:
        return not self.only or plugin in self.only

    def params(self, what: str) -> list[Param]:
        if self.error:
            return [Param(self, "error", "registry", error=self.error)]
        reg = self.registry
        if what == "zoo_plugin":
            names = {e.plugin for t in (reg.architectures, reg.datasets) for e in t.values()}
            names |= {f.plugin for f in reg.failures}
            names |= {n for n, _ in reg.pm.list_name_plugin()}
            chosen = sorted(n for n in names if self._selected(n))
            missing = [n for n in self.only if n not in names]
            out = [Param(self, "plugin", n) for n in chosen]
            out += [Param(self, "error", n, error=f"no plugin named '{n}' is registered; registered plugins: "
                          f"{', '.join(sorted(names))} (install yours, or point --zoo-plugin-dir / ZOO_PLUGIN_DIR "
                          f"at its folder)") for n in missing]
            return out
        if what == "zoo_dataset":
            return [Param(self, "dataset", e.plugin, n) for n, e in sorted(reg.datasets.items())
                    if self._selected(e.plugin)]
        if what == "zoo_arch":
            return [Param(self, "arch", e.plugin, n) for n, e in sorted(reg.architectures.items())
                    if self._selected(e.plugin)]
        if what == "zoo_case":
            return [Param(self, "case", e.plugin, n, kind) for n, e in sorted(reg.architectures.items())
                    if self._selected(e.plugin) for kind in dict.fromkeys(e.decl.kinds)]
        raise ValueError(f"unknown contract parameter {what!r}: one of {', '.join(PARAMS)}")

    # ---- running a check

    def run(self, param: Param, check: str) -> None:
        if param.what == "error":
            raise ContractFailure(f"{param.label} {check}: {param.error}")
        import torch

        try:
            with torch.random.fork_rng(devices=[]):
                if param.what == "plugin":
                    return self._check_plugin(param)
                if param.what == "dataset":
                    return self._check_dataset(param)
                if param.what == "arch":
                    return self._check_hydra(param)
                case = _Case(self, param, check)
                getattr(case, "check_" + check.replace(" ", "_"))()
        except (ContractFailure, _Skip):
            raise
        except Exception as exc:  # plugin code raising somewhere the checks did not expect
            self.fail(param, check, _raised("the check", exc))

    def fail(self, param: Param, check: str, message: str) -> None:
        raise ContractFailure(f"{param.label} {check}: {message}")

    def _check_plugin(self, p: Param) -> None:
        for f in self.registry.failures:
            if f.plugin == p.plugin:
                self.fail(p, "loads", f"{f.error} (from {f.source})")

    def load(self, name: str):
        """The dataset's Splits at its smoke settings (cached), or a string saying why not."""
        if name not in self._data:
            import torch

            decl = self.registry.datasets[name].decl
            params = {**decl.defaults, **decl.smoke}
            try:
                torch.manual_seed(SEED)
                self._data[name] = decl.load(seed=SEED, **params)
            except Exception as exc:
                self._data[name] = _raised(f"load({_kwargs({'seed': SEED, **params})})", exc)
        return self._data[name]

    def _check_dataset(self, p: Param) -> None:
        from zoo.plugin.declarations import Splits
        from zoo.plugin.tasks import TASKS

        decl = self.registry.datasets[p.name].decl
        extra = sorted(set(decl.smoke) - set(decl.defaults))
        if extra:
            self.fail(p, "loads", f"smoke settings {extra} are not among its defaults ({', '.join(decl.defaults) or 'none'})")
        splits = self.load(p.name)
        if isinstance(splits, str):
            self.fail(p, "loads", splits)
        if not isinstance(splits, Splits):
            self.fail(p, "loads", f"load() returned {type(splits).__name__}, expected zoo.Splits")
        info = splits.info
        if (info.kind, info.task) != (decl.kind, decl.task):
            self.fail(p, "loads", f"declared kind={decl.kind} task={decl.task} but its DataInfo says "
                                  f"kind={info.kind} task={info.task}")
        if decl.task not in TASKS:
            self.fail(p, "loads", f"unknown task '{decl.task}'; known tasks: {', '.join(TASKS)}")
        sizes = {s: len(getattr(splits, s)) for s in ("train", "val", "test")}
        if not all(sizes.values()):
            self.fail(p, "loads", f"empty split at its smoke settings: {sizes}")

    def _check_hydra(self, p: Param) -> None:
        from omegaconf import OmegaConf

        from zoo.config import _plain, compose, override_value, register_configs
        from zoo.plugin.registry import Registry

        entry = self.registry.architectures[p.name]
        defaults = dict(entry.decl.defaults)
        try:  # this architecture's node only: another plugin's bad defaults are its own failure
            register_configs(Registry(self.registry.pm, {p.name: entry}, {}))
        except Exception as exc:
            bad = next((f"model.{k}={v!r} ({type(v).__name__})" for k, v in defaults.items()
                        if not _plain_value(v)), "its defaults")
            self.fail(p, "hydra", f"{bad} cannot be a Hydra config value: {_first_line(exc)}; "
                                  f"use ints, floats, bools, strings, None, and lists or dicts of them")
        expected = {"name": p.name, **{k: _plain(v) for k, v in defaults.items()}}
        overrides = [f"model.{k}={override_value(v)}" for k, v in defaults.items()]
        for label, extra in (("model=" + p.name, []), ("every default as an override", overrides)):
            try:  # the model group alone, from Zoo's config folder, as `zoo train model=<name> ...` composes it
                cfg = compose([f"+model={p.name}", *extra], config_name=None)
                got = OmegaConf.to_container(cfg.model, resolve=True)
            except Exception as exc:
                self.fail(p, "hydra", f"composing {label} ({' '.join([f'model={p.name}', *extra])}) failed: "
                                      f"{_first_line(exc)}")
            for key, want in expected.items():
                have = got.get(key, "<missing>")
                if not _same(have, want):
                    how = f"after the override model.{key}={override_value(defaults[key])}" if extra else f"from {label}"
                    self.fail(p, "hydra", f"model.{key}: the default {want!r} ({type(want).__name__}) came back as "
                                          f"{have!r} ({type(have).__name__}) {how}")
            stray = sorted(set(got) - set(expected))
            if stray:
                self.fail(p, "hydra", f"{label} gives settings that are not defaults: {stray}")


class _Case:
    """One architecture on one data kind: the smallest compatible dataset, one batch."""

    def __init__(self, kit: Kit, param: Param, check: str):
        from zoo.plugin.tasks import TASKS

        self.kit, self.param, self.check = kit, param, check
        self.entry = kit.registry.architectures[param.name]
        decl = self.entry.decl
        names = [n for n, e in kit.registry.datasets.items()
                 if e.decl.kind == param.kind and (decl.tasks is None or e.decl.task in decl.tasks)]
        if not names:
            tasks = f" for tasks {', '.join(decl.tasks)}" if decl.tasks else ""
            raise _Skip(f"{param.label}: no registered dataset of kind '{param.kind}'{tasks}; "
                        f"kind '{param.kind}' is not checked")
        loaded = {n: kit.load(n) for n in names}
        ok = {n: s for n, s in loaded.items() if not isinstance(s, str) and len(s.train)}
        if not ok:
            self.fail(f"no dataset of kind '{param.kind}' loads: "
                      + "; ".join(f"data={n}: {why if isinstance(why, str) else 'empty training split'}"
                                  for n, why in loaded.items()))
        self.data = min(ok, key=lambda n: (len(ok[n].train), n))
        self.splits = ok[self.data]
        self.info = self.splits.info
        if self.info.task not in TASKS:
            self.fail(f"data={self.data} has unknown task '{self.info.task}'")
        self.task = TASKS[self.info.task]
        batch = next(iter(self.splits.train.batches(BATCH, shuffle=False)))
        self.inputs, self.target = batch
        extra = sorted(set(decl.smoke) - set(decl.defaults))
        if extra:
            self.fail(f"smoke settings {extra} are not among its defaults ({', '.join(decl.defaults) or 'none'})")

    def fail(self, message: str):
        self.kit.fail(self.param, self.check, message)

    # ---- helpers

    def build(self, smoke: bool = True, seed: int = SEED):
        import torch

        decl = self.entry.decl
        hp = {**decl.defaults, **(decl.smoke if smoke else {})}
        torch.manual_seed(seed)
        try:
            model = decl.build(self.info, **hp)
        except Exception as exc:
            which = "defaults" if not smoke else "defaults + smoke settings"
            self.fail(_raised(f"build(info of data={self.data}, {_kwargs(hp)}) with its {which}", exc))
        if not isinstance(model, torch.nn.Module):
            self.fail(f"build() returned {type(model).__name__}, expected a torch.nn.Module")
        return model

    def forward(self, model, train: bool = False):
        model.train(train)
        try:
            return model(self.inputs)
        except Exception as exc:
            self.fail(_raised(f"forward on a batch of data={self.data} (inputs {_shape(self.inputs)})", exc))

    def loss(self, output):
        import torch

        try:
            value = self.task.loss(output, self.target, self.inputs)
        except Exception as exc:
            self.fail(_raised(f"the {self.task.name} loss on its output {_shape(output)} "
                              f"(target {_shape(self.target)})", exc))
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            self.fail(f"the {self.task.name} loss gave {value!r}, expected a scalar tensor")
        return value

    def eval_output(self, model):
        import torch

        with torch.no_grad():
            return self.forward(model, train=False)

    def eval_loss(self, model) -> float:
        import torch

        with torch.no_grad():
            return float(self.loss(self.forward(model, train=False)))

    def shape_problem(self, output) -> str | None:
        """Why ``output`` is not what the task expects for this batch, or None."""
        import torch

        task, info = self.task.name, self.info
        if not isinstance(output, torch.Tensor):
            return f"expected a tensor, got {type(output).__name__} from forward on data={self.data}"
        got = tuple(output.shape)
        target = tuple(self.target.shape) if isinstance(self.target, torch.Tensor) else None
        inputs = tuple(self.inputs.shape) if isinstance(self.inputs, torch.Tensor) else None
        flat: tuple | None = None
        if task in ("classification", "next_token"):
            want = (*target, info.output_dim)
            what = (f"{task}: target {target} + {info.output_dim} "
                    f"{'classes' if task == 'classification' else 'tokens in the vocabulary'}")
        elif task == "regression":
            want, what = target, f"regression: the target's shape"
        elif task in ("reconstruction", "anomaly") and inputs is not None:
            want, what = inputs, f"{task}: the input's shape"
            flat = (inputs[0], math.prod(inputs[1:]))
        else:
            return None  # a task whose output shape the kit does not know: the loss decides
        if got == want or got == flat:
            return None
        alt = f" (or {flat} flattened)" if flat and flat != want else ""
        return f"expected {want}{alt}, got {got} for data={self.data} ({what})"

    # ---- the checks

    def check_builds(self):
        model = self.build(smoke=False)
        problem = self.shape_problem(self.eval_output(model))
        if problem:
            self.fail(f"with its defaults: {problem}")

    def check_output_shape(self):
        problem = self.shape_problem(self.eval_output(self.build()))
        if problem:
            self.fail(problem)

    def check_gradients(self):
        import torch

        model = self.build()
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not params:
            self.fail("it has no trainable parameters")
        loss = self.loss(self.forward(model, train=True))
        if not torch.isfinite(loss):
            self.fail(f"the loss of the freshly built model is {float(loss)} on data={self.data}")
        try:
            loss.backward()
        except Exception as exc:
            self.fail(_raised("backward", exc))
        none = [n for n, p in params if p.grad is None]
        bad = [(n, int((~torch.isfinite(p.grad)).sum()), p.grad.numel()) for n, p in params
               if p.grad is not None and not torch.isfinite(p.grad).all()]
        zero = [n for n, p in params if p.grad is not None and not p.grad.any()]
        total = f"of {len(params)} trainable parameters"
        if none:
            what = f"parameter {none[0]}" if len(none) == 1 else f"{len(none)} {total} ({', '.join(none[:6])}{', ...' if len(none) > 6 else ''})"
            self.fail(f"{what} got no gradient (grad is None) from one backward pass on data={self.data}")
        if bad:
            self.fail(f"{len(bad)} {total} got non-finite gradients: "
                      + ", ".join(f"{n} ({k} of {m} entries nan/inf)" for n, k, m in bad[:6]))
        if zero:
            what = f"parameter {zero[0]}" if len(zero) == 1 else f"{len(zero)} {total} ({', '.join(zero[:6])}{', ...' if len(zero) > 6 else ''})"
            self.fail(f"{what} got an all-zero gradient from one backward pass on data={self.data}")

    def check_overfit(self):
        import torch

        model = self.build()
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            self.fail("it has no trainable parameters")
        opt = torch.optim.Adam(params, lr=LR)
        first = self.eval_loss(model)
        if not math.isfinite(first):
            self.fail(f"the loss of the freshly built model is {first} on data={self.data}")
        goal = (1 - DROP) * first
        best, last = first, first
        for step in range(1, STEPS + 1):
            opt.zero_grad(set_to_none=True)
            loss = self.loss(self.forward(model, train=True))
            if not torch.isfinite(loss):
                self.fail(f"the loss became {float(loss)} at step {step} of Adam (lr {LR}) on one batch "
                          f"of data={self.data} (it started at {first:.4g})")
            loss.backward()
            opt.step()
            if step % EVAL_EVERY == 0 or step == STEPS:
                last = self.eval_loss(model)
                best = min(best, last)
                if last <= goal:
                    return
        n = _examples(self.target, self.inputs)
        self.fail(f"loss {first:.4g} -> {last:.4g} (best {best:.4g}) after {STEPS} Adam steps (lr {LR}) "
                  f"on one batch of {n} of data={self.data}: a {100 * (1 - last / first):.1f}% drop, "
                  f"need >= {100 * DROP:.0f}% (loss <= {goal:.4g})")

    def check_state_dict(self):
        import io

        import torch

        model = self.build(seed=SEED)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad] or [torch.zeros(1)], lr=LR)
        opt.zero_grad()
        loss = self.loss(self.forward(model, train=True))
        if loss.requires_grad:
            loss.backward()
            opt.step()  # move the weights and running statistics away from their initial values
        want = self.eval_output(model)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        try:
            state = torch.load(buf, weights_only=True)
        except Exception as exc:
            self.fail(_raised("torch.load(weights_only=True) of its state_dict", exc))
        fresh = self.build(seed=SEED + 1)
        try:
            fresh.load_state_dict(state)
        except Exception as exc:
            self.fail(_raised(f"a fresh build's load_state_dict (seed {SEED + 1})", exc))
        diff = _diff(want, self.eval_output(fresh))
        if diff:
            self.fail(f"a fresh build (seed {SEED + 1}) loaded with the trained model's state_dict gives "
                      f"different outputs on data={self.data}: {diff}; keep all state in parameters or "
                      f"persistent buffers")

    def check_determinism(self):
        a, b = self.build(seed=SEED), self.build(seed=SEED)
        sa, sb = a.state_dict(), b.state_dict()
        if list(sa) != list(sb):
            self.fail(f"two builds with seed {SEED} have different state_dict keys: "
                      f"{sorted(set(sa) ^ set(sb))[:6]}")
        for key in sa:
            diff = _diff(sa[key], sb[key])
            if diff:
                self.fail(f"two builds with seed {SEED} differ on the CPU: {key}: {diff}; draw every "
                          f"random number from torch's generator")
        diff = _diff(self.eval_output(a), self.eval_output(b))
        if diff:
            self.fail(f"two builds with seed {SEED} give different outputs on the CPU on data={self.data}: {diff}")


# ================================================================================== helpers

def _plain_value(v: Any) -> bool:
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain_value(x) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return all(_plain_value(x) for x in v)
    return v is None or isinstance(v, (bool, int, float, str))


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types (1 is not 1.0 nor True); lists element by element; nan == nan."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _diff(a, b) -> str:
    """'' when ``a`` and ``b`` are identical tensors, else how they differ."""
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
        if torch.equal(a, b):
            return ""
        if not a.is_floating_point():
            return f"{int((a != b).sum())} of {a.numel()} entries differ"
        d = (a.detach().float() - b.detach().float()).abs()
        d = torch.where(torch.isnan(d), torch.full_like(d, float("inf")), d)
        return f"max |a-b| = {float(d.max()):.3g} ({int((d > 0).sum())} of {a.numel()} entries differ)"
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        return next((f"item {i}: {d}" for i, d in ((i, _diff(x, y)) for i, (x, y) in enumerate(zip(a, b))) if d), "")
    return "" if a == b else f"{a!r} != {b!r}"


def _shape(x) -> str:
    shape = getattr(x, "shape", None)
    return str(tuple(shape)) if shape is not None else type(x).__name__


def _examples(target, inputs) -> str:
    n = getattr(target, "shape", (None,))[0]
    graphs = getattr(inputs, "num_graphs", None)
    return f"{graphs} graphs" if graphs else f"{n} examples"


def _kwargs(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _raised(what: str, exc: BaseException) -> str:
    """'<what> raised <Error>: <message> (at file.py:line)', the line in the plugin's own code."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    core = Path(__file__).resolve().parent  # the zoo package: its subpackages are Zoo's, not the plugin's
    libs = ("/torch/", "/torch_geometric/", "/site-packages/omegaconf/", "/site-packages/hydra/")
    outside = [f for f in frames if not any(s in f.filename for s in libs)]
    plugin = [f for f in outside if core not in Path(f.filename).resolve().parents]
    frame = (plugin or outside or [None])[-1]
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{what} raised {_first_line(exc)}{where}"
