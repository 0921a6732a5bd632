"""The bad-input catalogue in docs/bad-input.md is generated from the tests and checked here.

Regenerate it with:  .venv/bin/python -m tests.test_catalogue
"""

from __future__ import annotations

import importlib
from pathlib import Path

from . import test_bad_input as bad
from . import test_data_bad_input as bad_files
from . import test_search as search
from . import test_faults as faults
from . import test_models as models
from . import test_resume as resume

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
    ("a plugin with a misspelt hook", "unknown hook 'zoo_architecture'; did you mean 'zoo_architectures'? (hooks: ...)",
     "test_plugin_conventions::test_a_misspelt_hook_gets_did_you_mean"),
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
    ("`zoo train -m data=iris model=mlp,perceptron hydra.sweeper.repeats=0`",
     "hydra.sweeper.repeats=0 is invalid: expected an integer >= 1 (the seeds every configuration runs with)",
     "test_search::test_grid_repeats_zero_and_repeats_with_a_seed_sweep_are_one_line"),
    ("`zoo train -m seed=0,1 hydra.sweeper.repeats=2`",
     "seed is swept and hydra.sweeper.repeats=2 runs every configuration with 2 seeds: use one of them",
     "test_search::test_grid_repeats_zero_and_repeats_with_a_seed_sweep_are_one_line"),
    ("`zoo train hparams_search=mlp_digits data=diabetes hydra.sweeper.optuna.metric=null "
     "hydra.sweeper.optuna.direction=maximize`",
     "hydra.sweeper.optuna.direction=maximize contradicts the metric best/val_mse, which improves by going down "
     "(minimize): leave direction unset, or set it to minimize",
     "test_search::test_a_direction_against_the_metric_is_one_line_and_no_run"),
    ("`zoo train -m hydra/launcher=slurm ...` on a machine without `sbatch`",
     "hydra/launcher=slurm needs Slurm's sbatch, which is not on this machine's PATH: run the command on the "
     "cluster's login node (or hydra/launcher=parallel to run the jobs here)",
     "test_search::test_an_engine_out_of_reach_is_one_line_and_no_run"),
    ("a Ray launcher with `hydra.launcher.ray.init.address=HOST:PORT` where nothing answers",
     "hydra.launcher.ray.init.address=127.0.0.1:PORT: no Ray cluster answers there (Connection refused); start one "
     "(ray start --head) or fix the address", "test_search::test_an_engine_out_of_reach_is_one_line_and_no_run"),
    # security (issue 17)
    ("resume=<a last.pt whose config holds optimizer.foo=[[{_target_: numpy.savetxt, ...}]]>",
     "optimizer.foo[0][0]._target_='numpy.savetxt' is invalid: expected plain data (nothing is called)",
     "test_safety::test_a_target_nested_in_lists_of_a_checkpoint_runs_nothing"),
    ("zoo train '+optimizer.foo=[[{_target_:numpy.savetxt,...}]]'", "optimizer.foo[0][0]._target_='numpy.savetxt' is invalid",
     "test_safety::test_a_target_nested_in_lists_of_an_override_runs_nothing"),
    ("_partial_, _args_, _recursive_, _convert_ (at any depth) where Zoo does not expect them",
     "optimizer.foo[0][0][0]._partial_=True is invalid: expected no _partial_ here",
     "test_safety::test_instantiate_keys_are_refused_wherever_zoo_does_not_expect_them"),
    ("resume=<a last.pt whose config holds ${oc.env:SECRET_TOKEN}>",
     "... its config holds the interpolation tracking.experiment='leak-${oc.env:SECRET_TOKEN}' ... (nothing resolved)",
     "test_safety::test_a_checkpoint_config_is_data_and_its_interpolations_are_refused"),
    ("zoo server --auth with MLFLOW_AUTH_ADMIN_PASSWORD blank, short or one character repeated",
     "MLFLOW_AUTH_ADMIN_PASSWORD is blank (is 5 characters long, is one character repeated 16 times); choose ...",
     "test_safety::test_zoo_server_refuses_a_weak_admin_password"),
    ("zoo train tracking.experiment=<10,000 characters>", "tracking.experiment='xxxx...' (10000 characters) ... at most 500 characters",
     "test_safety::test_a_long_experiment_name_blames_tracking_experiment"),
    # memory, disks and stores (issue 17)
    ("zoo train model.hidden_sizes=[100000,100000]",
     "model=mlp needs about 149.0 GiB to train (10,000,900,003 parameters, ...) but N GiB of cpu memory is available; "
     "lower model.hidden_sizes=[100000, 100000]", "test_faults::test_memory_is_estimated_before_allocating"),
    ("zoo train data=moons data.n_samples=100000000000",
     "data=moons: data.n_samples=100000000000 needs at least 1490.1 GiB ...; lower data.n_samples",
     "test_faults::test_memory_is_estimated_before_allocating"),
    ("zoo train data=text data.path=<a file larger than the memory>",
     "data=text: not enough memory (...); use a smaller file than data.path='...' (100.0 GiB)",
     "test_faults::test_a_data_file_larger_than_memory_is_one_line"),
    ("checkpoints on a full disk", "cannot write the checkpoint last.pt in <folder>: no space left on the device (N MiB free); "
     "free some space or point hydra.run.dir ... (run ... ended FAILED)", "test_faults::test_a_full_disk_for_checkpoints_fails_the_run_in_one_line"),
    ("artifacts on a full disk", "cannot store the artifact ... in <folder>: No space left on device; ... (run ... ended FAILED)",
     "test_faults::test_a_full_disk_for_artifacts_fails_the_run_in_one_line"),
    ("the store refuses rows mid-run (its disk fills; the tracking server goes away)",
     "the store refused rows from step N: <reason>; they are in <checkpoints>/journal-<run id>.jsonl; run `zoo sync <run id>` "
     "once the store is back (run ... ended FAILED) / ...; the store could not record the run's end either (...)",
     "test_journal::test_a_store_whose_disk_fills_mid_run_loses_no_row_and_zoo_sync_replays_them"),
    ("zoo sync <unknown run id> / <a file that is not a journal> / with the store away",
     "unknown run id '...' in <store> / <file> is not a Zoo journal (its first line is not a journal header) / "
     "cannot read the MLflow store ...", "test_journal::test_zoo_sync_errors_are_one_line"),
    ("a read-only artifacts folder", "tracking.uri=...: the artifacts folder ... is not writable (Read-only file system); ...",
     "test_faults::test_a_read_only_artifacts_folder_is_refused_before_any_run"),
    ("tracking.uri=<a SQLite file that is not an MLflow store> (zoo train, zoo compare, zoo server)",
     "tracking.uri=...: ... is a SQLite database but not an MLflow store (its tables: notes); Zoo leaves it untouched: ...",
     "test_faults::test_a_sqlite_file_that_is_not_an_mlflow_store_is_refused_and_left_untouched"),
    # plugin faults (issue 17)
    ("a plugin whose build hangs (ZOO_PLUGIN_TIMEOUT=2)", "model=faultnet: build did not finish within 2 s (plugin 'faulty', ...); "
     "the plugin may hang: fix it, or set ZOO_PLUGIN_TIMEOUT=<seconds> ...", "test_faults::test_a_plugin_that_hangs_in_build_is_stopped_by_the_time_limit"),
    ("a plugin that hangs or calls sys.exit at import", "warning: plugin 'bad' (...) was skipped: import did not finish within 15 s "
     "(import failed: it called sys.exit(3))", "test_faults::test_a_plugin_that_hangs_or_exits_at_import_is_skipped_with_a_warning"),
    ("zoo train --config-dir DIR experiment=<misspelt name of the user's own preset>",
     "unknown experiment 'my_irs' in experiment=my_irs. Did you mean 'my_iris'?",
     "test_hydra_conventions::test_presets_and_models_from_the_users_config_folder_train"),
    ("zoo list --bogus (or any argument but plugins.dir=PATH)",
     "zoo list: unknown argument '--bogus'; usage: zoo list [plugins.dir=PATH]",
     "test_plugin_conventions::test_zoo_list_shows_descriptions_and_its_usage"),
    # signals and stale runs (issue 17): exit 128 + the signal, the run KILLED, one line naming it
    ("SIGTERM to zoo train in its test pass (exit 143)",
     "interrupted (SIGTERM): run ... ended KILLED; continue it with: zoo train resume=...",
     "test_end_states::test_sigterm_during_the_test_pass_ends_the_run_killed_and_resume_finishes_it"),
    ("SIGTERM to zoo train while it logs its model, plots and report (exit 143)",
     "interrupted (SIGTERM): run ... ended KILLED; continue it with: zoo train resume=... (test/* and the checkpoints kept)",
     "test_end_states::test_sigterm_while_logging_after_training_keeps_every_metric_and_the_checkpoint"),
    ("SIGHUP to zoo train: the terminal closed (exit 129)",
     "interrupted (SIGHUP): run ... ended KILLED; continue it with: zoo train resume=...",
     "test_end_states::test_a_signal_mid_training_ends_the_run_killed_and_names_it"),
    ("Ctrl-C twice (exit 130)", "interrupted: run ... ended KILLED; continue it with: zoo train resume=...",
     "test_end_states::test_a_signal_mid_training_ends_the_run_killed_and_names_it"),
    ("SIGTERM to zoo train -m hydra/launcher=parallel hydra.launcher.n_jobs=2 seed=0,1,2 ... (exit 143)",
     "interrupted (SIGTERM): the sweep's parent run ... ended KILLED; 2 jobs stopped: continue each with "
     "zoo train resume=<run id> (...); 1 job not started",
     "test_end_states::test_sigterm_to_a_parallel_sweep_stops_its_workers_and_ends_every_run_killed"),
    ("SIGTERM to zoo train -m seed=0,1 ... (exit 143)",
     "interrupted (SIGTERM): the sweep's parent run ... ended KILLED; 1 job stopped: continue each with "
     "zoo train resume=<run id> (...); 1 job not started",
     "test_end_states::test_sigterm_to_a_serial_sweep_ends_the_job_and_the_parent_killed"),
    ("kill -9 of zoo train or of a sweep, then zoo runs --close-stale",
     "(zoo.error of each run, a sweep's children first) stale: its process N on HOST is gone; ended KILLED by "
     "zoo runs --close-stale at ...", "test_end_states::test_kill_9_leaves_a_stale_run_that_zoo_runs_finds_and_closes"),
    ("zoo runs --stale-after 0", "zoo runs: --stale-after 0 is invalid: expected a number of seconds > 0",
     "test_end_states::test_zoo_runs_bad_input_is_one_line"),
    ("a family's report that raises after training (a warning; the run ends FINISHED)",
     "model=bad_report_net: its report failed (KeyError: 'oops in report'); the run goes on without it",
     "test_plugin_conventions::test_a_failing_report_does_not_fail_a_run_that_trained"),
]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def render() -> str:
    rows = [("`zoo train " + o + "`", m, "test_bad_input::test_bad_value_fails_before_any_run") for o, m in bad.BAD_VALUES]
    rows += [("`zoo train " + " ".join(a) + "`", m, "test_bad_input::test_command_line_error_is_one_line") for a, m in bad.CLI_CASES]
    rows += [(i, m.format(t="..."), "test_data_bad_input::test_bad_file_is_one_line_and_no_run") for i, _, m in bad_files.CASES]
    rows += [("`zoo train -m hydra.sweeper.search=optuna optimizer.lr=interval(0.01,0.1) " + " ".join(a) + "`",
              m.removeprefix("error: ") + ("..." if m.endswith(": ") else ""),
              "test_search::test_bad_search_input_is_one_line_and_no_run") for a, m in search.BAD_SEARCH]
    rows += [("`zoo " + " ".join(a) + "`", m, "test_models::test_bad_model_input_is_one_line_and_leaves_no_run")
             for a, m in models.BAD_MODEL_INPUT]
    rows += [(i, m, t) for i, m, t in OTHER_CASES + resume.RESUME_CASES]
    rows += [(f"a model plugin: {w}", m, "test_faults::test_a_faulty_model_plugin_is_one_line_before_any_run")
             for _, w, m in faults.MODEL_FAULTS]
    rows += [(f"a dataset plugin: {w}", m, "test_faults::test_a_faulty_dataset_plugin_is_one_line_before_any_run")
             for _, w, m in faults.DATA_FAULTS]
    lines = ["# Bad input: the catalogue", "",
             "Every case ends with one line on stderr (`error: ...`, or a `warning:` for a skipped plugin),",
             "exit status 2, no traceback unless `HYDRA_FULL_ERROR=1`, and no run left RUNNING or half-written",
             "in the store: names and values are checked before a run is created. This table is generated from",
             "the tests (`.venv/bin/python -m tests.test_catalogue`) and `tests/test_catalogue.py` fails when it",
             "is out of date. A fault that can only show once a run exists (a full disk) ends that run FAILED",
             "with the same line as its reason. A signal (Ctrl-C, SIGTERM, SIGHUP) ends the run KILLED",
             "and the command with exit status 128 + the signal and one `interrupted` line naming the run.", "",
             "Where the checks live: `zoo.config.check_choices` reads each `group=name` before Hydra composes",
             "(`zoo/config/choices.py`, asking Hydra's config loader for the names: the user's `--config-dir`",
             "and `hydra.searchpath` folders count); `zoo.config.check_composes` composes the command line",
             "once and turns Hydra's composition errors (a misspelt key without `+`, `+group=` for a group",
             "already chosen) into one line (`zoo/config/composition.py`); `zoo.config.validate` checks every value of the composed config",
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
    for _, _, ref in OTHER_CASES + resume.RESUME_CASES:
        module, name = ref.split("::")
        assert hasattr(importlib.import_module(f"tests.{module}"), name), ref


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
