"""The bad-input catalogue in docs/bad-input.md is generated from the tests and checked here.

Regenerate it with:  .venv/bin/python -m tests.test_catalogue
"""

from __future__ import annotations

import importlib
from pathlib import Path

from . import test_bad_input as bad
from . import test_data_bad_input as bad_files
from . import test_models as models

DOC = Path(__file__).resolve().parent.parent / "docs" / "bad-input.md"

# (what the user gives, what the one-line error says (a fragment), the test that checks it)
OTHER_CASES = [
    ("a numeric model setting with a wrong type or out of range (every built-in architecture)",
     "model.<key>='abc' is invalid / model.<key>=-1 is out of range",
     "test_architectures::test_every_numeric_setting_rejects_bad_values"),
    ("a numeric data setting with a wrong type or out of range (every built-in dataset)",
     "data.<key>='abc' is invalid / data.<key>=-1 ...", "test_architectures::test_every_numeric_data_setting_rejects_bad_values"),
    ("model=gcn data=digits (incompatible pair)", "model=gcn does not accept data=digits (kind tabular, ...); compatible datasets: cycles, karate",
     "test_bad_input::test_graph_model_on_tabular_data"),
    ("trainer.device=cuda on a machine without a GPU", "trainer.device='cuda' is invalid: expected cpu or auto: no CUDA GPU is available",
     "test_bad_input::test_cuda_without_gpu_is_an_error"),
    ("resume=<unknown run id>", "resume=...: no run with this id in <store> and no such file or folder", "test_resume::test_resume_errors"),
    ("resume=<corrupt checkpoint file>", "checkpoint ... is corrupt or not a Zoo checkpoint", "test_resume::test_resume_errors"),
    ("resume=<a .pt that is not a Zoo checkpoint>", "checkpoint ... is not a Zoo checkpoint (missing [...])", "test_resume::test_resume_errors"),
    ("resume=<folder without checkpoints>", "resume=...: no checkpoints/last.pt in that folder", "test_resume::test_resume_errors"),
    ("resume=<a FINISHED run>", "resume=...: the run already FINISHED; nothing to continue", "test_resume::test_resume_errors"),
    ("a plugin that raises on import", "warning: plugin 'raises' (...) was skipped: import failed: RuntimeError: boom at import",
     "test_registry::test_broken_plugin_on_the_command_line"),
    ("a plugin that returns something that is not a declaration", "zoo_architectures(): expected zoo.Architecture, got str",
     "test_registry::test_broken_plugin_is_reported_and_the_rest_works"),
    ("a plugin with a misspelt hook", "unknown hook 'zoo_architecture'", "test_registry::test_broken_plugin_is_reported_and_the_rest_works"),
    ("ZOO_STRICT_PLUGINS=1 with a broken plugin", "plugin 'raises' (...) failed: ... (unset ZOO_STRICT_PLUGINS to skip it)",
     "test_registry::test_broken_plugin_on_the_command_line"),
    ("a plugin that duplicates a built-in name", "architecture name 'mlp' is declared twice: by plugin 'ann' (built-in) and by plugin 'copycat' (...)",
     "test_registry::test_duplicate_name_names_both_plugins"),
    ("plugins.dir=<not a folder>", "plugins.dir='...' is not a directory", "test_registry::test_missing_plugin_folder"),
    ("data=text data.path=<empty / missing / binary / not UTF-8 / a folder>",
     "data=text: data.path='...' is empty (does not exist, is not text, ...): point data.path at a UTF-8 text file",
     "test_transformer::test_text_loader_rejects_unusable_files"),
    ("a graph with an edge index out of range", "graph 1: edge_index out of range: it refers to node 3 but the graph has 3 nodes",
     "test_gnn::test_edge_index_out_of_range_is_rejected"),
    ("a loss that becomes NaN or infinite", "non-finite loss at step N: nan; lower optimizer.lr or set trainer.grad_clip (run ... ended FAILED)",
     "test_train::test_non_finite_loss_fails_the_run_at_once"),
    ("an unknown command (zoo trian)", "unknown command 'trian'. Did you mean 'train'?", "test_bad_input::test_unknown_command"),
    ("MLFLOW_RUN_ID=<a run> in the environment (zoo train, or a sweep)",
     "MLFLOW_RUN_ID=... is set in the environment, and Zoo never logs into another run: unset MLFLOW_RUN_ID "
     "(to continue a run Zoo stopped, use resume=<run id>)",
     "test_mlflow_conventions::test_inherited_mlflow_run_id_never_touches_that_run"),
    ("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=maybe", "tracking.system_metrics='maybe' is invalid: expected true or false",
     "test_mlflow_conventions::test_system_metrics_logging_env_false_turns_them_off"),
    ("zoo.train(cfg) inside `with mlflow.start_run():`, tracking.uri naming another store than that run's",
     "an MLflow run is active in this process (run ... in ...) and tracking.uri=... is another store: "
     "Zoo's run cannot nest under it there; leave tracking.uri unset ...",
     "test_mlflow_conventions::test_nesting_into_another_store_is_refused"),
    ("zoo.compose([\"model=mpl\"]) (Python)", "unknown model (architecture) 'mpl' in model=mpl. Did you mean 'mlp'?",
     "test_mlflow_conventions::test_compose_is_what_zoo_train_composes"),
]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def render() -> str:
    rows = [("`zoo train " + o + "`", m, "test_bad_input::test_bad_value_fails_before_any_run") for o, m in bad.BAD_VALUES]
    rows += [("`zoo train " + " ".join(a) + "`", m, "test_bad_input::test_command_line_error_is_one_line") for a, m in bad.CLI_CASES]
    rows += [(i, m.format(t="..."), "test_data_bad_input::test_bad_file_is_one_line_and_no_run") for i, _, m in bad_files.CASES]
    rows += [("`zoo " + " ".join(a) + "`", m, "test_models::test_bad_model_input_is_one_line_and_leaves_no_run")
             for a, m in models.BAD_MODEL_INPUT]
    rows += [(i, m, t) for i, m, t in OTHER_CASES]
    lines = ["# Bad input: the catalogue", "",
             "Every case ends with one line on stderr (`error: ...`, or a `warning:` for a skipped plugin),",
             "exit status 2, no traceback unless `HYDRA_FULL_ERROR=1`, and no run left RUNNING or half-written",
             "in the store: names and values are checked before a run is created. This table is generated from",
             "the tests (`.venv/bin/python -m tests.test_catalogue`) and `tests/test_catalogue.py` fails when it",
             "is out of date.", "",
             "Where the checks live: `zoo.config.check_choices` reads each `group=name` before Hydra composes",
             "(`zoo/config/choices.py`); `zoo.config.validate` checks every value of the composed config",
             "(`zoo/config/validation.py`: the model's and the dataset's settings against their plugin's",
             "defaults, then `SETTINGS`, one rule per setting of Zoo's own groups, and the `_target_`",
             "allow-list, in the order the errors are reported); the plugins check their own values. The",
             "command line prints every one through `zoo.errors.fail`. The model commands (`zoo predict`, `eval`,",
             "`serve`, `register`, `init_from=`) check a model's name in `zoo/tracking/models.py` and its data and",
             "input files in `zoo/models/` ([models.md](models.md)).", "",
             "| input | the error says | test |", "|---|---|---|"]
    lines += [f"| {_cell(i)} | {_cell(m)} | `tests/{t.split('::')[0]}.py::{t.split('::')[1]}` |" for i, m, t in rows]
    return "\n".join(lines) + "\n"


def test_catalogue_doc_is_current():
    assert DOC.read_text() == render(), "docs/bad-input.md is stale: run .venv/bin/python -m tests.test_catalogue"


def test_every_catalogued_test_exists():
    for _, _, ref in OTHER_CASES:
        module, name = ref.split("::")
        assert hasattr(importlib.import_module(f"tests.{module}"), name), ref


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
