"""``zoo predict MODEL --input FILE --output FILE``: a trained model's answers for a file (or a text prompt)."""

from __future__ import annotations

import sys

from zoo.cli.args import Parser, quiet_downloads
from zoo.errors import ZooError


def main(args: list[str]) -> int:
    p = Parser("zoo predict", "A trained model's answers for the rows, arrays, images or text of a file.",
               "inputs: .csv .parquet .json (rows or a graph) .npy .npz .txt (one prompt per line) or a folder of images\n"
               "outputs: .csv .parquet .json .npz .npy, or .txt for generated text; stdout when --output is absent\n\n"
               "examples:\n  zoo predict models:/digits-mlp@champion --input digits.csv --output labels.csv\n"
               "  zoo predict 3f2a9c1d --input windows.npy --output forecast.npz\n"
               "  zoo predict models:/shakespeare@latest --prompt 'To be' --max-new-tokens 200")
    p.add_model()
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", "-i", metavar="FILE", help="the file (or folder of images) to predict for")
    source.add_argument("--prompt", help="a text prompt (text models): the next-token probabilities, or generated text")
    p.add_argument("--output", "-o", metavar="FILE", help="where the answers go (default: printed)")
    p.add_argument("--answers", default="all",
                   help="which answers: all (default), default (no probabilities), or names like label,probabilities")
    p.add_argument("--max-new-tokens", type=int, default=0, help="text models with generate (gpt): tokens to sample")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_store()
    ns = p.parse_args(args)
    if ns.max_new_tokens < 0:
        raise ZooError(f"--max-new-tokens {ns.max_new_tokens} is invalid: expected an integer >= 0")
    if ns.temperature <= 0:
        raise ZooError(f"--temperature {ns.temperature} is invalid: expected a number > 0")
    quiet_downloads()
    from zoo.models.predict import predict_file, write_output
    from zoo.models.reference import load_model

    model = load_model(ns.model, ns.uri)
    params = {}
    if ns.max_new_tokens or ns.prompt is not None:
        params = {"max_new_tokens": ns.max_new_tokens, "temperature": ns.temperature, "top_k": ns.top_k,
                  "seed": ns.seed}
        if model.info.kind != "text":
            raise ZooError(f"--prompt and --max-new-tokens are for text models; model {model.architecture} "
                           f"takes {model.info.kind} data: give --input FILE")
        if ns.max_new_tokens and not hasattr(model.net, "generate"):
            raise ZooError(f"--max-new-tokens: model {model.architecture} cannot generate text (gpt can)")
    answers = model.predict([ns.prompt], ns.answers, **params) if ns.prompt is not None else \
        predict_file(model, ns.input, ns.answers, **params)
    if ns.output:
        path = write_output(answers, ns.output)
        print(f"zoo: {model.architecture} ({model.record.get('source')}) answered {_count(answers)} -> {path}",
              file=sys.stderr)
    elif ns.prompt is not None and "generated" in answers:
        print(ns.prompt + answers["generated"][0])
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", 50, "display.width", 200):
            print(answers)
    return 0


def _count(answers) -> str:
    import numpy as np

    n = len(answers) if hasattr(answers, "columns") else len(next(iter(answers.values()))) \
        if isinstance(answers, dict) else len(np.asarray(answers))
    return f"{n} row{'s' if n != 1 else ''}"
