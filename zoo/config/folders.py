"""Every ``zoo train`` gets its own output folder, even when several start in the same second.

Hydra names a job's folder after the time, to the second (``outputs/<date>/<time>``, a sweep's
``multirun/<date>/<time>``): two commands started together shared one, and with it Hydra's
``.hydra/`` files, ``train.log``, the figures and a sweep's job folders ``0, 1, ...``.
:class:`OwnOutputFolder` (a Hydra callback in ``conf/config.yaml``) claims the folder before
the job or the sweep starts, by creating it: a folder that exists already is another command's,
and the next free name is taken instead (``<time>_2``, ``<time>_3``, ...). A folder given on the
command line (``hydra.run.dir=...``, ``hydra.sweep.dir=...``) is used as given. (Checkpoints
never collide in any case: each run writes into ``checkpoints/<run id>/``.)
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from zoo.config.overrides import override_key, override_value


class OwnOutputFolder(Callback):
    """Hydra callback: a time-named run or sweep folder that no other command uses."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        claim(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        claim(config, "sweep")


def claim(config: DictConfig, kind: str) -> Path | None:
    """Create ``hydra.<kind>.dir`` (or the next free ``<name>_N``) and make it the job's or the sweep's folder.

    Hydra composes each job of a sweep again from the command line's ``hydra.*`` overrides, so the
    folder is set as one of them too. Returns the folder claimed, or None when it was left as it was.
    """
    key = f"hydra.{kind}.dir"
    typed = OmegaConf.to_container(config.hydra[kind], resolve=False).get("dir")
    given = any(override_key(str(o)) == key for o in config.hydra.overrides.hydra)
    if given or "${now:" not in str(typed):  # a folder the user chose, or one not named after the time
        return None
    base = Path(str(config.hydra[kind].dir))
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        folder = base if n == 1 else base.with_name(f"{base.name}_{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        break
    with read_write(config.hydra):
        config.hydra[kind].dir = str(folder)
        config.hydra.overrides.hydra.append(f"{key}={override_value(str(folder))}")
    return folder
