"""Looking tasks up by name: a task is a :class:`zoo.Task` declaration, registered like the rest.

Every task, the five built-in ones too (``zoo_builtins.tasks``), comes from a plugin's
``zoo_tasks()`` hook; :meth:`Registry.task` finds one in a given registry, and :func:`get_task`
in the default one (the entry points and ``ZOO_PLUGIN_DIR``), for notebooks and for builders
that are handed only a :class:`zoo.DataInfo`.
"""

from __future__ import annotations

from zoo.plugin.declarations import DataInfo
from zoo.plugin.registry import get_task

__all__ = ["get_task", "per_position"]


def per_position(info: DataInfo) -> bool:
    """Whether a sequence model predicts one output per position for this data, or one per sequence.

    The dataset's ``meta["per_token"]`` when it says (``zoo.create_model`` fills it in from the
    task), else the task's :attr:`zoo.Task.per_position`.
    """
    if "per_token" in info.meta:
        return bool(info.meta["per_token"])
    return get_task(info.task).per_position

