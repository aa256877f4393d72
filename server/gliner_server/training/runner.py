"""One training run with the gliner2 library's own trainer: split, evaluate the base, train, save, evaluate.

Used by the worker for every training job and by ``gliner2-build-demo-model``.
The records are shuffled with the run's seed and a held-out share is set
aside; the base model is scored on it, trained on the rest (LoRA over the base
model, or every weight), saved, loaded back the way the server loads it (the
base checkpoint with the adapter merged, or the full checkpoint) and scored
again. Training reports each optimizer step to a :class:`Reporter`, which may
stop it (:class:`TrainingStopped`) between steps.
"""
from __future__ import annotations

import contextlib
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from .evaluation import compare, evaluate

logger = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """A stop was asked for; the run ends between two steps."""


class Reporter:
    """What a run tells the outside (the worker writes it to the job; the demo build prints it)."""

    def stage(self, name: str) -> None: ...

    def step(self, epoch: float, step: int, total_steps: int, loss: float) -> None: ...

    def log(self, level: str, message: str) -> None: ...

    def check_stop(self) -> None:
        """Raise :class:`TrainingStopped` to end the run."""


@dataclass(frozen=True)
class RunSettings:
    training_type: str = "lora"      # "lora" | "full"
    nr_epochs: int = 3
    learning_rate: float = 5e-4      # LoRA weights; in full training the encoder's (heads: 50x, the library's ratio)
    batch_size: int = 8
    held_out_fraction: float = 0.1
    seed: int = 42
    warmup_ratio: float = 0.1


def split_records(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(training, held-out) records: a seeded shuffle, ``fraction`` of them held out (at least one if any)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = int(len(records) * fraction)
    if fraction > 0 and held == 0 and len(records) >= 2:
        held = 1
    return [records[i] for i in order[held:]], [records[i] for i in order[:held]]


def load_library_model(source: str, adapter: str | None = None):
    """A gliner2 PyTorch model from a hub id or directory, with a LoRA adapter merged in (as the server does)."""
    from gliner2 import AutoExtractor

    from ..runtime.checkpoint import resolve_checkpoint
    from ..runtime.loaded_model import merge_adapter

    model = AutoExtractor.from_pretrained(str(resolve_checkpoint(source).path))
    if adapter is not None:
        merge_adapter(model, Path(adapter))
    model.eval()
    return model


def _trainer_class():
    from gliner2.training.trainer import ExtractorTrainer

    class JobTrainer(ExtractorTrainer):
        """The library's trainer, reporting every logged step and saving only the final checkpoint."""

        reporter: Reporter = Reporter()

        def _log_metrics(self, metrics, prefix=""):
            super()._log_metrics(metrics, prefix)
            if prefix == "train":
                values = metrics if isinstance(metrics, dict) else metrics.to_dict()
                self.reporter.step(float(values.get("epoch", 0.0)), int(values.get("step", 0)),
                                   int(getattr(self, "_planned_max_steps", 0)), float(values.get("loss", 0.0)))
                self.reporter.check_stop()

        def _save_checkpoint(self, name):
            if name == "final":   # intermediate checkpoints only cost time and disk here
                super()._save_checkpoint(name)

    return JobTrainer


class _ToReporter(logging.Handler):
    """The trainer's log lines (its set-up summary, epoch losses) into the run's log."""

    def __init__(self, reporter: Reporter):
        super().__init__(logging.INFO)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a log line must never break training
            self.reporter.log(record.levelname, record.getMessage())


def run_training(base_source: str, base_adapter: str | None, records: list[dict], out_dir: Path,
                 settings: RunSettings, reporter: Reporter = Reporter(), *,
                 eval_records: list[dict] | None = None) -> dict:
    """Train and evaluate; the model ends up in ``out_dir/model``.

    ``eval_records``: a separate evaluation set (the demo build's); otherwise
    ``settings.held_out_fraction`` of ``records`` is held out. Returns
    ``{"artifact": {...}, "evaluation": {...} or None, "train_records", "held_out_records"}``; the
    artifact's ``path`` is relative to ``out_dir``.
    """
    from gliner2.training.trainer import TrainingConfig

    if eval_records is None:
        train, held_out = split_records(records, settings.held_out_fraction, settings.seed)
    else:
        train, held_out = list(records), list(eval_records)
    if not train:
        raise ValueError("no records left to train on")
    reporter.log("INFO", f"{len(train)} training records, {len(held_out)} held out; {settings.training_type} "
                         f"training, {settings.nr_epochs} epoch(s), learning rate {settings.learning_rate:g}, "
                         f"batch size {settings.batch_size}")
    reporter.stage("loading")
    model = load_library_model(base_source, base_adapter)
    reporter.check_stop()
    base_scores = None
    if held_out:
        reporter.stage("evaluating base")
        base_scores = evaluate(model, held_out, stop=reporter.check_stop)
        reporter.log("INFO", f"base model on the held-out split: precision {base_scores['precision']:.3f}, "
                             f"recall {base_scores['recall']:.3f}, F1 {base_scores['f1']:.3f}")
    lora = settings.training_type == "lora"
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    config = TrainingConfig(
        output_dir=str(work), num_epochs=settings.nr_epochs, batch_size=settings.batch_size,
        encoder_lr=settings.learning_rate, task_lr=settings.learning_rate if lora else settings.learning_rate * 50,
        warmup_ratio=settings.warmup_ratio, fp16=False, bf16=False, num_workers=0, pin_memory=False,
        eval_strategy="epoch", save_best=False, save_total_limit=0, logging_steps=1, seed=settings.seed,
        use_lora=lora, save_adapter_only=True, report_to_wandb=False)
    reporter.stage("training")
    trainer_logger = logging.getLogger("gliner2.training.trainer")
    handler = _ToReporter(reporter)
    trainer_logger.addHandler(handler)
    try:
        trainer = _trainer_class()(model, config)
        trainer.reporter = reporter
        trainer.train(train_data=train)
    finally:
        trainer_logger.removeHandler(handler)
    del trainer, model
    reporter.stage("saving")
    final = work / "final"
    target = out_dir / "model"
    shutil.rmtree(target, ignore_errors=True)
    if lora and base_adapter is not None:
        # An adapter over an adapted base: serve one full checkpoint instead of a chain of adapters.
        merged = load_library_model(base_source, base_adapter)
        from ..runtime.loaded_model import merge_adapter

        merge_adapter(merged, final)
        merged.save_pretrained(str(target))
        artifact = {"kind": "full", "path": "model"}
    elif lora:
        shutil.move(str(final), str(target))
        artifact = {"kind": "adapter", "path": "model", "base_source": base_source}
    else:
        shutil.move(str(final), str(target))
        artifact = {"kind": "full", "path": "model"}
    shutil.rmtree(work, ignore_errors=True)
    evaluation = None
    if held_out:
        reporter.stage("evaluating trained")
        trained = (load_library_model(base_source, str(target)) if artifact["kind"] == "adapter"
                   else load_library_model(str(target)))
        trained_scores = evaluate(trained, held_out, stop=reporter.check_stop)
        reporter.log("INFO", f"trained model on the held-out split: precision {trained_scores['precision']:.3f}, "
                             f"recall {trained_scores['recall']:.3f}, F1 {trained_scores['f1']:.3f}")
        evaluation = compare(base_scores, trained_scores)
    else:
        trained = None
    artifact.update(_bundle(base_source, artifact, out_dir, trained, reporter))
    return {"artifact": artifact, "evaluation": evaluation, "train_records": len(train),
            "held_out_records": len(held_out)}


def _bundle(base_source: str, artifact: dict, out_dir: Path, trained, reporter) -> dict:
    """The trained model converted into a bundle beside it (``{"bundle": "bundle"}``), or ``{}``.

    Servers without PyTorch (the lean install) then serve the job's model as
    they serve any bundle; a model the lean runtime cannot run is served by the
    library from the artefact itself.
    """
    from ..conversion.bundle import UnsupportedModel, convert

    reporter.stage("converting")
    model_dir = out_dir / artifact["path"]
    source, adapter = (base_source, model_dir) if artifact["kind"] == "adapter" else (str(model_dir), None)
    try:
        convert(source, out_dir / "bundle", adapter=adapter, model=trained, cache_dir=out_dir / ".convert-cache")
    except UnsupportedModel as error:
        reporter.log("INFO", f"no bundle for this model ({error}); it is served through the gliner2 library")
        return {}
    finally:
        shutil.rmtree(out_dir / ".convert-cache", ignore_errors=True)
    reporter.log("INFO", "converted the trained model into a bundle for serving")
    return {"bundle": "bundle"}
