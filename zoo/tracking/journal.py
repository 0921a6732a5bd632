"""The local journal: what the store refused during a run, kept beside the run's checkpoints until ``zoo sync``.

When the store refuses rows (a full disk, a tracking server that went away, a lock that does not
clear) after the writer's bounded retries, the run does not stop and nothing is dropped: from then
on, everything the run sends to the store goes to ``<checkpoint folder>/journal-<run id>.jsonl``
instead, in order, and the run ends FAILED with the reason (W&B's offline mode and ``wandb sync``
are the model). :func:`replay` (``zoo sync RUN_ID``, and ``resume=`` of that run through
:func:`replay_before_resume`) writes the journal into the store once it is back, so that every step
of every metric is there exactly once, then renames the journal ``*.replayed``.

A journal is plain JSON lines, data only (``json.loads`` runs no code): a header
``{"zoo_journal": 1, "run_id": ..., "uri": ...}``, then one record per batch:
``{"refused": reason, "step": N}`` (why it started), ``{"metrics": [[key, value, ms, step], ...]}``,
``{"tags": {...}}``, ``{"artifact": path, "folder": ...}`` (a local file the run meant to store),
``{"text": ..., "name": ...}`` and ``{"end": status, "error": ...}`` (the run's end, when the store
could not take that either). A last line cut short by a crash is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import ZooError, one_line
from zoo.tracking import tags as tag

log = logging.getLogger(__name__)

VERSION = 1
REPLAYED = ".replayed"  # a replayed journal is renamed with this suffix (kept, never replayed again)


def journal_path(folder: str | os.PathLike, run_id: str) -> Path:
    """Where run ``run_id``'s journal goes: its checkpoint folder (named after the run: a folder may be shared)."""
    return Path(folder) / f"journal-{run_id}.jsonl"


class Journal:
    """The append-only journal of one run; shared by the writer thread and the training thread.

    Nothing is written until the store first refuses something (:meth:`refused`); from then on
    :attr:`active` is True and the run sends everything here.
    """

    def __init__(self, path: str | os.PathLike, run_id: str, uri: str):
        self.path, self.run_id, self.uri = Path(path), run_id, uri
        self.lock = threading.RLock()
        self.active = False
        self.step: int | None = None  # the first step refused
        self.reason: str | None = None

    def append(self, record: dict) -> None:
        """Add one record (raises ``OSError`` when the journal's own disk refuses it too)."""
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            with open(self.path, "a", encoding="utf-8") as f:
                if new:
                    f.write(json.dumps({"zoo_journal": VERSION, "run_id": self.run_id, "uri": self.uri}) + "\n")
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def refused(self, reason: str, step: int | None, record: dict) -> None:
        """The store refused ``record`` (at ``step``): start journaling (a warning, once), and keep it.

        Raises :class:`ZooError` when the journal cannot be written either.
        """
        with self.lock:
            first = not self.active
            try:
                if first:
                    self.append({"refused": reason, "step": step})
                    self.step, self.reason, self.active = step, reason, True
                self.append(record)
            except OSError as exc:
                raise ZooError(f"the store refused rows from step {step} ({reason}) and the journal {self.path} "
                               f"could not take them either: {one_line(exc)}") from None
        if first:
            log.warning("the store refused rows from step %s (%s); from now on the run's rows go to %s and "
                        "training goes on; run `zoo sync %s` once the store is back", step, reason, self.path,
                        self.run_id)

    def keep(self, record: dict) -> bool:
        """Keep ``record`` here instead of the store, if the store refused rows (True: kept)."""
        if not self.active:
            return False
        try:
            self.append(record)
        except OSError as exc:
            raise ZooError(f"{self.message()}, and the journal cannot take more: {one_line(exc)}") from None
        return True

    def end(self, client, status: str, error: str | None, end_run) -> None:
        """End the run ``status`` with the reason where the store still takes it, else journal the end.

        ``end_run``: MLflow's, which forgets the run first, then tells the store. Always raises the
        one line the command prints, except for a run stopped by the user whose end was written
        (the command line then says how to resume).
        """
        reason = self.message()
        error, problem = f"{reason}; then: {error}" if error else reason, None
        mlflow_log = logging.getLogger("mlflow")  # its error log of a refused call: said below, in one line
        level = mlflow_log.level
        mlflow_log.setLevel(logging.CRITICAL)
        try:
            client.set_tag(self.run_id, tag.ERROR, error[:5000])
        except Exception as exc:
            problem = exc
        try:
            end_run(status)
        except Exception as exc:
            problem = problem or exc
        finally:
            mlflow_log.setLevel(level)
        if problem is None:
            if status == "KILLED":
                return
            raise ZooError(f"{reason} (run {self.run_id} ended {status})")
        try:
            self.append({"end": status, "error": error})
        except OSError as exc:
            raise ZooError(f"{reason}; the store could not record the run's end ({one_line(problem, 200)}) "
                           f"and the journal could not either ({one_line(exc, 100)})") from None
        raise ZooError(f"{reason}; the store could not record the run's end either ({one_line(problem, 200)}): "
                       f"it shows RUNNING until then")

    def message(self) -> str:
        """The run's reason: one line saying what happened and what to do."""
        return (f"the store refused rows from step {self.step}: {self.reason}; they are in {self.path}; "
                f"run `zoo sync {self.run_id}` once the store is back")


# ---------------------------------------------------------------------------------------------- replay
@dataclass
class Replayed:
    """What :func:`replay` wrote: counts for the one line ``zoo sync`` prints."""

    run_id: str
    path: Path
    rows: int = 0  # metric rows written
    present: int = 0  # metric rows skipped: their step was already in the store
    tags: int = 0
    artifacts: int = 0
    missing: list[str] = field(default_factory=list)  # artifact files gone from the disk since
    ended: str | None = None  # the end state written from the journal

    def line(self) -> str:
        parts = [f"{self.rows} metric rows written ({self.present} already in the store)", f"{self.tags} tags",
                 f"{self.artifacts} artifacts"]
        if self.missing:
            parts.append(f"{len(self.missing)} artifact files no longer exist ({', '.join(self.missing[:3])})")
        if self.ended:
            parts.append(f"the run ended {self.ended}")
        return f"run {self.run_id}: {', '.join(parts)}; the journal is kept as {self.path}{REPLAYED}"


def read(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """A journal's header and records (a last line cut short by a crash is left out)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(f"cannot read the journal {path}: {one_line(exc)}") from None
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:  # the process died while writing it
                break
            raise ZooError(f"{path} is not a Zoo journal: line {i + 1} is not JSON") from None
    if not records or not isinstance(records[0], dict) or records[0].get("zoo_journal") != VERSION \
            or not isinstance(records[0].get("run_id"), str):
        raise ZooError(f"{path} is not a Zoo journal (its first line is not a journal header)")
    return records[0], records[1:]


def find(client, run_id: str, folder: str | os.PathLike | None = None) -> Path | None:
    """Run ``run_id``'s journal: in ``folder``, or the checkpoint folder recorded on the run. None if there is none."""
    from mlflow.exceptions import MlflowException

    if folder and journal_path(folder, run_id).is_file():
        return journal_path(folder, run_id)
    folders = []
    try:
        run_tags = client.get_run(run_id).data.tags
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":  # the caller reports an unknown run
            return None
        raise
    if run_tags.get(tag.CHECKPOINT_DIR):
        folders.append(Path(run_tags[tag.CHECKPOINT_DIR]))
    if run_tags.get(tag.OUTPUT_DIR):  # the run's start was recorded, its checkpoint folder perhaps not
        folders.append(Path(run_tags[tag.OUTPUT_DIR]) / "checkpoints")
    for f in folders:
        if journal_path(f, run_id).is_file():
            return journal_path(f, run_id)
    return None


def replay(uri: str, path: str | os.PathLike) -> Replayed:
    """Write the journal at ``path`` into the store ``uri``; every metric step ends up there once.

    A metric row whose ``(key, step)`` the store already holds is skipped (the writer may have
    stored it before the journal took over, or an earlier ``zoo sync`` was cut short), so replaying
    twice writes nothing twice. The journal is then renamed ``*.replayed``.
    """
    import mlflow
    from mlflow.entities import Metric, RunTag

    header, records = read(path)
    run_id = header["run_id"]
    client = mlflow.MlflowClient(uri)
    client.get_run(run_id)  # an unknown run: MLflow's error, turned into one line by the caller
    done = Replayed(run_id, Path(path))
    rows: dict[str, list] = {}
    for r in records:
        for key, value, ms, step in r.get("metrics", ()):
            rows.setdefault(key, []).append((key, value, ms, step))
    for key, found in rows.items():
        stored = {m.step for m in client.get_metric_history(run_id, key)}
        new, seen = [], set()
        for row in found:
            if row[3] in stored or row[3] in seen:
                done.present += row[3] in stored
                continue
            seen.add(row[3])
            new.append(Metric(*row))
        for i in range(0, len(new), 1000):  # MLflow's most metrics per log_batch
            client.log_batch(run_id, metrics=new[i:i + 1000], synchronous=True)
        done.rows += len(new)
    end = None
    for r in records:
        if "tags" in r:
            items = [RunTag(k, str(v)[:5000]) for k, v in r["tags"].items()]
            for i in range(0, len(items), 100):
                client.log_batch(run_id, tags=items[i:i + 100])
            done.tags += len(items)
        elif "artifact" in r:
            if Path(r["artifact"]).exists():
                client.log_artifact(run_id, r["artifact"], r.get("folder"))
                done.artifacts += 1
            else:
                done.missing.append(str(r["artifact"]))
        elif "text" in r:
            client.log_text(run_id, r["text"], r["name"])
            done.artifacts += 1
        elif "end" in r:
            end = r
    if end is not None:
        if end.get("error"):
            client.set_tag(run_id, tag.ERROR, str(end["error"])[:5000])
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, end["end"])
            done.ended = end["end"]
    client.set_tag(run_id, tag.SYNCED, f"{done.rows} rows from {path} at {time.strftime('%Y-%m-%d %H:%M:%S')}")
    os.replace(path, f"{path}{REPLAYED}")
    return done


def sync(uri: str, run_id: str, folder: str | os.PathLike | None = None) -> Replayed | None:
    """Replay run ``run_id``'s journal (see :func:`find`) into ``uri``; None when it has none.

    Raises :class:`ZooError` (one line) when the store cannot take it yet.
    """
    import mlflow

    from zoo.tracking.store import bounded_http

    path = None
    with bounded_http(uri):  # a person waits: a store still away is an error in seconds
        try:
            path = find(mlflow.MlflowClient(uri), run_id, folder)
            return None if path is None else replay(uri, path)
        except ZooError:
            raise
        except Exception as exc:
            raise ZooError(f"cannot replay the journal of run {run_id} ({path or 'not found yet'}) into {uri}: "
                           f"{one_line(exc, 300)}; it is kept: run `zoo sync {run_id}` again once the store "
                           f"is back") from None


def replay_before_resume(uri: str, run_id: str, folder: str | os.PathLike | None = None) -> Replayed | None:
    """Before ``resume=`` continues run ``run_id``: its journal, if any, goes into the store first.

    The one function the resume step calls (``folder``: the checkpoint folder it resumes from).
    """
    done = sync(uri, run_id, folder)
    if done is not None:
        log.warning("replayed the journal of run %s before resuming it: %s", run_id, done.line())
    return done
