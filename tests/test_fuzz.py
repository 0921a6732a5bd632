"""A property test over command-line overrides: no input crashes Zoo with an unhandled exception.

Each example is a list of overrides drawn from the real config's keys and groups (and keys that
do not exist), with values of every kind: numbers at the edges, NaN, lists, nulls, names close
to real ones, interpolations, strings Hydra's grammar rejects. It goes through what
``zoo train`` does before a run exists, in-process for speed: ``zoo.config.check_choices``,
Hydra's compose (the same override parser and composition as ``@hydra.main``),
``zoo.config.validate`` and the device and seed checks. The property: it validates, or it raises
``ZooError`` (the CLI prints one line) or one of Hydra's compact errors (an override that does
not parse, a key or group that does not exist: also one line). Any other exception is a crash.

``ZOO_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py`` explores further with fresh random examples;
by default the 200 examples are derandomised so CI sees the same inputs every time.
"""

from __future__ import annotations

import os
import string

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import CompactHydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from zoo.config import CONF_DIR, GROUPS, check_choices, group_choices, validate
from zoo.config.choices import without_null_choices
from zoo.errors import ZooError, fail
from zoo.training.train import resolve_device
from zoo.tracking import flatten

from .conftest import run_zoo

EXAMPLES = int(os.environ.get("ZOO_FUZZ_EXAMPLES", "200"))
OUT = "paths.output_dir=/nonexistent/zoo-fuzz"  # ${hydra:...} only resolves inside @hydra.main


@pytest.fixture(scope="module")
def hydra_ctx(registry):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        yield registry


@pytest.fixture(scope="module")
def config_keys(hydra_ctx):
    """Every leaf key of the default config and of each model's and dataset's own settings."""
    keys = set(flatten(OmegaConf.to_container(compose("config", overrides=[OUT]), resolve=False)))
    reg = hydra_ctx
    for group, table in (("model", reg.architectures), ("data", reg.datasets)):
        for entry in table.values():
            keys |= {f"{group}.{k}" for k in entry.decl.defaults}
    return sorted(keys)


def _near_miss(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name[:-1], name + "x", name.upper(), name[::-1], f" {name}"])


def values() -> st.SearchStrategy[str]:
    """The text after ``=``, as a user could type it."""
    scalar = st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.sampled_from(["0", "-1", "1", "2", "1e400", "-1e400", "nan", "inf", "-inf", "1e-320", "0.0",
                         "true", "false", "null", "full", "auto", "cpu", "cuda", "cuda:7", "mps", "32",
                         "bf16", "fp16", "''", '""', "' '", "[]", "{}", "[[]]", "[1,[2,[3]]]"]),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(alphabet=string.ascii_letters + string.digits + "_-.:/", max_size=12),
        st.sampled_from(["${seed}", "${trainer.max_epochs}", "${oc.env:HOME}", "${oc.env:ZOO_FUZZ_UNSET}",
                         "${oc.decode:'[1,2]'}", "${nope}", "${", "}", "$", "\\", "'", '"', "=", ",", "a,b",
                         "torch.optim.SGD", "os.system", "builtins.eval", "__import__('os')", "choice(1,2)",
                         "range(1,3)", "interval(0,1)", "glob(*)", "${oc.create:{a: 1}}"]),
        st.text(max_size=8),  # anything at all, control characters included
    )
    lists = st.lists(scalar, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
    return st.one_of(scalar, lists)


def overrides(keys: list[str], registry) -> st.SearchStrategy[list[str]]:
    names = {g: group_choices(g, registry) or ["x"] for g in GROUPS}
    group_choice = st.sampled_from(GROUPS).flatmap(
        lambda g: st.one_of(st.sampled_from(names[g]).flatmap(_near_miss), values()).map(lambda v: f"{g}={v}"))
    key = st.one_of(st.sampled_from(keys), st.sampled_from(keys).map(lambda k: k + "_x"),
                    st.text(alphabet=string.ascii_lowercase + "._/@+~", min_size=1, max_size=12),
                    st.sampled_from(["hydra.job.chdir", "hydra.run.dir", "plugins.dir", "paths.output_dir", "@", "@x",
                                     "hydra/launcher", "hydra/sweeper", "hydra/job_logging", "hydra/help"]),
                    st.tuples(st.sampled_from(GROUPS), st.sampled_from(["", "_global_", "x", "model", "_here_"])).map(
                        lambda t: f"{t[0]}@{t[1]}"))  # Hydra's package syntax
    setting = st.tuples(st.sampled_from(["", "", "", "+", "++", "~"]), key, values()).map(
        lambda t: f"{t[0]}{t[1]}" if t[0] == "~" else f"{t[0]}{t[1]}={t[2]}")
    return st.lists(st.one_of(setting, setting, group_choice), min_size=1, max_size=5)


def pre_run(args: list[str], registry) -> dict:
    """What ``zoo train ARGS`` does before it creates a run (zoo/cli/train.py, zoo/training/train.py)."""
    args = without_null_choices(args)
    check_choices(args, registry)
    cfg = compose("config", overrides=[OUT, *args])
    plain = validate(cfg, registry)
    registry.check_pair(plain["model"]["name"], plain["data"]["name"])
    if plain["trainer"]["device"] in ("auto", "cpu"):
        resolve_device(plain["trainer"]["device"])
    torch.manual_seed(plain["seed"])
    return plain


def test_overrides_never_crash(hydra_ctx, config_keys, capsys):
    registry = hydra_ctx
    outcomes = {"valid": 0, "zoo": 0, "hydra": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize="ZOO_FUZZ_EXAMPLES" not in os.environ,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(overrides(config_keys, registry))
    def check(args):
        try:
            pre_run(args, registry)
            outcomes["valid"] += 1
        except ZooError as exc:
            with pytest.raises(SystemExit) as exited:  # what the command line prints for it
                fail(str(exc))
            err = capsys.readouterr().err
            assert exited.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, (args, err)
            outcomes["zoo"] += 1
        except CompactHydraException:
            outcomes["hydra"] += 1
        # anything else propagates: hypothesis shrinks it to the smallest failing overrides

    check()
    # the strategies reach all three outcomes, so the property is not vacuous
    assert all(outcomes.values()), outcomes


@pytest.mark.parametrize("args", [
    ["trainer.max_epochs=nan"], ["seed=-1"], ["seed=4294967296"], ["seed=99999999999999999999999"],
    ["optimizer.lr=-1e400"], ["model=mpl"], ["data=iris,digitz"], ["model.hidden_sizes=[a]"], ["trainer.batch_size=0"],
    ["trainer.device=cuda:x"], ["tracking.experiment=' '"], ["+model.nope=1"], ["trainer.max_epochs=${nope}"],
    ["model.hidden_sizes=[1,"], ["~model"], ["@=1"], ["+@="], ["model@=mlp"],
    ["hydra/launcher=1"], ["+=1"], ["optimizer._target_=numpy.savetxt"], ["optimizer._target_=builtins.open"],
    ["+optimizer.x={_target_:numpy.savetxt,_args_:[/tmp/x,[a]]}"], ["scheduler=step", "scheduler._target_=torch.optim.SGD"],
])
def test_known_bad_overrides_are_one_line_errors(hydra_ctx, args):
    with pytest.raises((ZooError, CompactHydraException)):
        pre_run(args, hydra_ctx)


def test_a_good_override_list_validates(hydra_ctx):
    plain = pre_run(["model=mlp", "data=iris", "model.hidden_sizes=[8]", "trainer.batch_size=full", "seed=3"], hydra_ctx)
    assert plain["model"]["hidden_sizes"] == [8] and plain["data"]["name"] == "iris" and plain["seed"] == 3
    assert "scheduler" not in pre_run(["scheduler=null"], hydra_ctx)  # valid Hydra: no scheduler


def test_a_checkpoint_cannot_make_zoo_run_code(tmp_path, hydra_ctx):
    """``resume=`` takes the config from the checkpoint (``weights_only=True`` keeps the file itself
    to tensors and plain data); a ``_target_`` hidden in that config is refused before Hydra's
    instantiate could call it (here: numpy.savetxt writing a file of the attacker's choosing)."""
    payload = tmp_path / "written-by-the-checkpoint"
    config = OmegaConf.to_container(compose("config", overrides=[OUT, "data=iris"]), resolve=True)
    config["optimizer"]["x"] = {"_target_": "numpy.savetxt", "_args_": [str(payload), ["echo pwned"]], "fmt": "%s"}
    (tmp_path / "evil" / "checkpoints").mkdir(parents=True)
    torch.save({"model": {}, "optimizer": {}, "epoch": 0, "step": 0, "rng": {}, "run_id": "0" * 32, "config": config},
               tmp_path / "evil" / "checkpoints" / "last.pt")
    r = run_zoo("train", f"resume={tmp_path / 'evil'}", cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip() == ("error: optimizer.x._target_='numpy.savetxt' is invalid: expected plain data: "
                                "only optimizer._target_ and scheduler._target_ may name a class")
    assert not payload.exists()
