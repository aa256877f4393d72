"""Where training jobs keep what they make, and how a complete job becomes a servable model.

Every job writes under ``TRAINING_DIR/<job id>/`` only: ``work/`` while it
trains, ``model/`` once complete (a PEFT LoRA adapter, or a full checkpoint).
The directory is ``--training-dir`` (or the configuration's ``training_dir``,
or ``$GLINER2_TRAINING_DIR``), by default ``DATA_DIR/training``; servers and
workers on several machines share it as a mounted path. Job ids are
``job_`` and 32 hex digits, and stored artefact paths are relative to the
training directory and checked to stay inside it, so nothing a client sends
can make a job read or write elsewhere.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..runtime.registry import ModelSpec
from .jobs import JOB_ID, JobRecord

TRAINING_DIR_ENV = "GLINER2_TRAINING_DIR"


def resolve_training_dir(training_dir: str | Path | None, data_dir: str | Path | None) -> Path:
    """The training directory: explicit, else ``$GLINER2_TRAINING_DIR``, else ``DATA_DIR/training``."""
    from ..history.cli import DEFAULT_DATA_DIR

    chosen = training_dir or os.environ.get(TRAINING_DIR_ENV) or Path(data_dir or DEFAULT_DATA_DIR) / "training"
    return Path(chosen).expanduser().resolve()


def job_dir(training_dir: Path, job_id: str) -> Path:
    if not JOB_ID.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return training_dir / job_id


def inside(training_dir: Path, relative: str) -> Path:
    """``training_dir / relative``, refusing anything that resolves outside it."""
    path = (training_dir / relative).resolve()
    if path != training_dir and training_dir not in path.parents:
        raise ValueError(f"artefact path {relative!r} leaves the training directory")
    return path


def model_source(job: JobRecord, training_dir: Path, *, bundle: bool = True) -> tuple[str, str | None]:
    """(checkpoint source, LoRA adapter directory or None) of a complete job's model.

    A job whose model was converted into a bundle (see ``runner._bundle``) is
    served from the bundle: no PyTorch needed where it is served. Training over
    a job's model (``bundle=False``) reads the checkpoint or adapter itself.
    """
    artifact = job.artifact or {}
    if bundle and artifact.get("bundle"):
        bundle = inside(training_dir, artifact["bundle"])
        if (bundle / "manifest.json").is_file():
            return str(bundle), None
    path = str(inside(training_dir, artifact["path"]))
    if artifact.get("kind") == "adapter":
        return artifact["base_source"], path
    return path, None


def job_model_spec(job: JobRecord, training_dir: Path) -> ModelSpec:
    """The registry's spec of a complete job's model: served by its job id, only to its owner."""
    source, adapter = model_source(job, training_dir)
    return ModelSpec(id=job.id, source=source, adapter=adapter, kind="fine_tuned",
                     description=job.spec.get("model_name") or f"trained from {job.spec.get('base_model')}",
                     owner=job.client_id, training_job_id=job.id)


class JobModels:
    """The model registry's resolver for complete training jobs (``jobs``: a :class:`JobStore`, set once
    the history is open). Ids that are not job ids never reach the database; a job id that is not a
    complete job is remembered as such for ``miss_ttl_s``."""

    def __init__(self, training_dir: Path, jobs=None, *, miss_ttl_s: float = 2.0):
        self.training_dir = training_dir
        self.jobs = jobs
        self.miss_ttl_s = miss_ttl_s
        self._misses: dict[str, float] = {}

    def __call__(self, model_id: str) -> ModelSpec | None:
        if self.jobs is None or not JOB_ID.match(model_id):
            return None
        now = time.monotonic()
        if self._misses.get(model_id, 0.0) > now:
            return None
        job = self.jobs.completed(model_id)
        if job is None or not job.artifact:
            if len(self._misses) > 10_000:
                self._misses.clear()
            self._misses[model_id] = now + self.miss_ttl_s
            return None
        return job_model_spec(job, self.training_dir)
