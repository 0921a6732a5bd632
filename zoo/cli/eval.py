"""``zoo eval MODEL [data=NAME] [data.<key>=VALUE ...] [split=test] [seed=N]``: a model measured on a split, as a new run."""

from __future__ import annotations

from zoo.cli.args import Parser, quiet_downloads
from zoo.errors import ZooError

KEYS = ("data", "split", "seed")


def main(args: list[str]) -> int:
    p = Parser("zoo eval", "Measure a trained model on a dataset's split; the result is a new MLflow run linked "
                           "to the model, with the task's metrics and figures.",
               "settings (key=value): data=NAME (default: the model's own), data.<key>=VALUE, split=train|val|test "
               "(default test), seed=N (default: the model's)\n\n"
               "examples:\n  zoo eval models:/digits-mlp@champion\n  zoo eval 3f2a9c1d split=val\n"
               "  zoo eval models:/moons-mlp/2 data=moons data.noise=0.3 seed=7")
    p.add_model()
    p.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="data=, data.<key>=, split=, seed=")
    p.add_argument("--experiment", "-e", help="the experiment of the evaluation run (default: the model's run's)")
    p.add_store()
    ns = p.parse_args(args)
    data, overrides, split, seed = None, [], "test", None
    for item in ns.settings:
        key, eq, value = item.partition("=")
        if not eq or not value:
            raise ZooError(f"{item!r} is not a setting: write key=value, e.g. split=val")
        if key == "data":
            data = value
        elif key.startswith("data."):
            overrides.append(item)
        elif key == "split":
            split = value
        elif key == "seed":
            if not value.isdecimal():
                raise ZooError(f"seed={value} is invalid: expected an integer >= 0")
            seed = int(value)
        else:
            raise ZooError(f"unknown setting {key!r} in {item}: zoo eval takes {', '.join(KEYS)} and data.<key>")
    quiet_downloads()
    from zoo.models.evaluate import evaluate

    m = evaluate(ns.model, data=data, data_overrides=overrides, split=split, seed=seed, uri=ns.uri,
                 experiment=ns.experiment)
    shown = " ".join(f"{k}={v:.4f}" for k, v in m.items() if k.startswith(f"{split}/"))
    print(f"zoo eval: {m['model_uri']} on {data or 'its own data'} ({split}) | {shown} | run {m['run_id']}")
    return 0
