"""``gliner2-train-worker``: takes training jobs from the database and runs them, one at a time.

Each job runs in a child process of the worker (spawned fresh, so its memory
is returned when it ends), with a bounded number of threads (``--threads``,
half the CPUs by default) and a lower scheduling priority (``--nice``), so
that serving on the same machine stays responsive. The worker itself only
supervises: it writes the job's heartbeat every ``--heartbeat-seconds``,
passes a stop request on to the child (SIGTERM: the run ends after the step in
progress; SIGKILL after ``--stop-grace-seconds``), and fails the job with the
reason if the child dies. If the worker itself dies, the child dies with it
(``PR_SET_PDEATHSIG``) and the job's heartbeat goes stale: the next worker
poll, or the API, marks it ``failed``.

With PostgreSQL any number of workers, on any number of machines, share the
queue (see :mod:`.jobs`). With SQLite one worker runs per database: a worker
that finds another one holding the training directory's lock waits for it.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

from ..lifetime import child_env, die_with_parent, follow_parent

logger = logging.getLogger("gliner2-train-worker")


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gliner2-train-worker", description=__doc__.splitlines()[0])
    p.add_argument("--database-url", help="the history database (default: SQLite in --data-dir, as gliner2-serve)")
    p.add_argument("--data-dir", type=Path, default=os.environ.get("GLINER2_DATA_DIR"),
                   help="where the default SQLite history lives (default ~/.local/share/gliner2-service)")
    p.add_argument("--training-dir", type=Path,
                   help="where jobs write their models (default DATA_DIR/training; the servers must see the "
                        "same directory, e.g. a shared mount when they run on other machines)")
    p.add_argument("--threads", type=int, default=default_threads(),
                   help="PyTorch threads per job (default: half the CPUs, so serving keeps the rest)")
    p.add_argument("--nice", type=int, default=10, help="scheduling niceness of training (default 10)")
    p.add_argument("--poll-seconds", type=float, default=2.0, help="how often to look for a job (default 2)")
    p.add_argument("--heartbeat-seconds", type=float, default=2.0,
                   help="how often a running job's heartbeat is written and a stop looked for (default 2)")
    p.add_argument("--stale-seconds", type=float, default=30.0,
                   help="a running job whose heartbeat is this old is failed: its worker died (default 30)")
    p.add_argument("--stop-grace-seconds", type=float, default=20.0,
                   help="after a stop, how long a job may take to end its step before it is killed (default 20)")
    p.add_argument("--history-timeout", type=float, default=10.0, help="longest wait for the database (default 10)")
    p.add_argument("--once", action="store_true", help="run the jobs that are waiting, then exit")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be at least 1")
    for name in ("poll_seconds", "heartbeat_seconds", "stale_seconds", "stop_grace_seconds", "history_timeout"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


class Worker:
    """The polling loop and the supervision of one job's child process."""

    def __init__(self, args: argparse.Namespace, database_url: str, training_dir: Path,
                 stopping: threading.Event | None = None):
        from ..history.store import HistoryStore
        from .jobs import JobStore

        self.args = args
        self.database_url = database_url
        self.training_dir = training_dir
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.store = HistoryStore.open(database_url, timeout_s=args.history_timeout)
        self.jobs = JobStore(self.store, stale_after_s=args.stale_seconds)
        self.stopping = stopping or threading.Event()   # set: finish (a running job is ended) and return

    def run(self) -> None:
        logger.info("worker %s: training directory %s, %d thread(s) per job", self.name, self.training_dir,
                    self.args.threads)
        while not self.stopping.is_set():
            job = None
            try:
                self.jobs.reap_stale()
                job = self.jobs.claim(self.name)
            except Exception as error:  # noqa: BLE001 - the database may be away for a while: keep polling
                logger.warning("cannot reach the job queue: %s", error)
            if job is None:
                if self.args.once:
                    return
                self.stopping.wait(self.args.poll_seconds)
                continue
            self.supervise(job)

    def supervise(self, job) -> None:
        logger.info("job %s: started (%s)", job.id, job.spec.get("training_type"))
        self._log(job.id, "INFO", f"taken by worker {self.name}")
        context = multiprocessing.get_context("spawn")
        env = {"OMP_NUM_THREADS": str(self.args.threads), "MKL_NUM_THREADS": str(self.args.threads),
               "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            child = context.Process(target=child_main, name=f"train-{job.id}", daemon=True,
                                    args=(job.id, job.client_id, self.name, self.database_url,
                                          str(self.training_dir), self.args.threads, self.args.nice,
                                          self.args.history_timeout))
            child.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        stop_sent: float | None = None
        reason = None
        while True:
            child.join(self.args.heartbeat_seconds)
            if not child.is_alive():
                break
            try:
                wanted = self.jobs.heartbeat(job.id, self.name)
            except Exception as error:  # noqa: BLE001 - a missed heartbeat is retried; staleness decides
                logger.warning("job %s: heartbeat failed: %s", job.id, error)
                continue
            if wanted is None:    # reaped or ended elsewhere: it is not ours any longer
                reason = "no longer this worker's job"
                child.kill()
                continue
            if (wanted or self.stopping.is_set()) and stop_sent is None:
                reason = "stop requested" if wanted else "the worker is shutting down"
                logger.info("job %s: %s", job.id, reason)
                child.terminate()
                stop_sent = time.monotonic()
            elif stop_sent is not None and time.monotonic() - stop_sent > self.args.stop_grace_seconds:
                logger.warning("job %s: did not stop within %.0fs; killing it", job.id, self.args.stop_grace_seconds)
                child.kill()
        code = child.exitcode
        # The child ends the job itself; this only applies if it could not (a crash, a kill).
        if stop_sent is not None and reason == "stop requested":
            status, error = "stopped", "stopped on request"
        elif stop_sent is not None:
            status, error = "failed", "the worker shut down during the job; request it again"
        else:
            how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            status, error = "failed", f"the training process died ({how}); see the job's log"
        try:
            if self.jobs.finish(job.id, self.name, status, error=error):
                self._log(job.id, "ERROR" if status == "failed" else "INFO", error)
        except Exception as failure:  # noqa: BLE001 - staleness will fail the job if this could not
            logger.warning("job %s: could not record its end: %s", job.id, failure)
        logger.info("job %s: ended (child exit %s)", job.id, code)

    def _log(self, job_id: str, level: str, message: str) -> None:
        try:
            self.jobs.log(job_id, level, message)
        except Exception:  # noqa: BLE001
            logger.warning("job %s: could not write its log", job_id)

    def close(self) -> None:
        self.store.close()


class JobReporter:
    """A running job's progress and log into the database (progress at most once a second), and its stop."""

    def __init__(self, jobs, job_id: str, worker: str, stop: threading.Event):
        self.jobs, self.job_id, self.worker, self.stop = jobs, job_id, worker, stop
        self.progress = {"stage": "starting", "epoch": 0.0, "step": 0, "total_steps": 0, "loss": 0.0}
        self._written = 0.0

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._written >= 1.0:
            self._written = now
            if self.jobs.heartbeat(self.job_id, self.worker, dict(self.progress)) is None:
                self.stop.set()    # the job is no longer ours

    def stage(self, name: str) -> None:
        self.progress["stage"] = name
        self.log("INFO", f"stage: {name}")
        self._write(force=True)

    def step(self, epoch: float, step: int, total_steps: int, loss: float) -> None:
        self.progress.update(epoch=round(epoch, 4), step=step, total_steps=total_steps, loss=round(loss, 6))
        every = max(1, total_steps // 20)
        if step % every == 0 or step == total_steps:
            self.log("INFO", f"step {step}/{total_steps} epoch {epoch:.2f} loss {loss:.4f}")
        self._write()

    def log(self, level: str, message: str) -> None:
        self.jobs.log(self.job_id, level, message)

    def check_stop(self) -> None:
        from .runner import TrainingStopped

        if self.stop.is_set():
            raise TrainingStopped()


def child_main(job_id: str, client_id: str, worker: str, database_url: str, training_dir: str, threads: int,
               nice: int, timeout_s: float) -> None:
    """One job, in its own process: the worker's child."""
    die_with_parent()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(nice)
    # Warnings and errors on standard error; the trainer's INFO lines go to the job's log (runner._ToReporter).
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s %(levelname)s {job_id} %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    logging.getLogger("gliner2.training.trainer").setLevel(logging.INFO)
    import shutil
    from functools import partialmethod

    import tqdm

    tqdm.tqdm.__init__ = partialmethod(tqdm.tqdm.__init__, disable=True)   # progress goes to the job instead

    import torch

    torch.set_num_threads(threads)
    from ..errors import ServiceError
    from ..history.store import HistoryStore
    from .artifacts import job_dir, model_source
    from .jobs import JobStore
    from .runner import RunSettings, TrainingStopped, run_training

    store = HistoryStore.open(database_url, timeout_s=timeout_s)
    jobs = JobStore(store)
    root = Path(training_dir)
    directory = job_dir(root, job_id)
    reporter = JobReporter(jobs, job_id, worker, stop)
    status, result, error = "failed", None, None
    try:
        job = jobs.get(client_id, job_id)
        spec = job.spec
        base = spec["base"]
        if base.get("job"):
            base_job = jobs.completed(base["job"])
            if base_job is None:
                raise ValueError(f"the base job {base['job']} is no longer complete")
            source, adapter = model_source(base_job, root, bundle=False)
        else:
            source, adapter = base["source"], base.get("adapter")
        records = jobs.dataset_records(client_id, spec["datasets"])
        directory.mkdir(parents=True, exist_ok=True)
        settings = RunSettings(training_type=spec["training_type"], nr_epochs=spec["nr_epochs"],
                               learning_rate=spec["learning_rate"], batch_size=spec["batch_size"],
                               held_out_fraction=spec["held_out_fraction"])
        result = run_training(source, adapter, records, directory, settings, reporter)
        result["artifact"]["path"] = f"{job_id}/{result['artifact']['path']}"
        if "bundle" in result["artifact"]:
            result["artifact"]["bundle"] = f"{job_id}/{result['artifact']['bundle']}"
        status = "complete"
    except TrainingStopped:
        if jobs.get(client_id, job_id).stop_requested:
            status, error = "stopped", "stopped on request"
        else:   # SIGTERM without a stop request: the worker (or the machine) is shutting down
            error = "the worker shut down during the job; request it again"
    except ServiceError as failure:
        error = failure.message
    except Exception as failure:  # noqa: BLE001 - whatever training raises fails the job, with the reason
        error = f"{type(failure).__name__}: {failure}"
        for line in traceback.format_exc().splitlines()[-20:]:
            reporter.log("ERROR", line)
    if status != "complete":
        shutil.rmtree(directory, ignore_errors=True)
    progress = dict(reporter.progress, stage=status)
    if status == "complete":
        progress.update(train_records=result["train_records"], held_out_records=result["held_out_records"])
    jobs.finish(job_id, worker, status, progress=progress, error=error,
                evaluation=result and result["evaluation"], artifact=result and result["artifact"])
    reporter.log("ERROR" if status == "failed" else "INFO", f"{status}" + (f": {error}" if error else ""))
    store.close()
    sys.stdout.flush()
    os._exit(0)   # skip interpreter teardown (PyTorch's thread pools)


def _single_worker_lock(training_dir: Path, stopping: threading.Event) -> int | None:
    """SQLite: one worker per database; waits while another worker holds the lock."""
    training_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(training_dir / ".worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    said = False
    while not stopping.is_set():
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if not said:
                logger.info("another worker runs the jobs of this SQLite database; waiting for it to stop")
                said = True
            stopping.wait(2.0)
    os.close(fd)
    return None


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from ..history.cli import resolve_database_url
    from .artifacts import resolve_training_dir

    database_url = resolve_database_url(args.database_url, args.data_dir)
    training_dir = resolve_training_dir(args.training_dir, args.data_dir)
    if not follow_parent():   # the serve command died before this worker could follow it
        return
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    lock = None
    if database_url.startswith("sqlite"):
        lock = _single_worker_lock(training_dir, stopping)
        if lock is None:
            return
    try:
        worker = Worker(args, database_url, training_dir, stopping)
    except Exception as error:  # noqa: BLE001
        sys.exit(f"gliner2-train-worker: cannot open the job queue: {type(error).__name__}: {error}")
    print(f"gliner2-train-worker: WAITING for jobs ({worker.name})", flush=True)
    try:
        worker.run()
    finally:
        worker.close()
        if lock is not None:
            os.close(lock)
    logger.info("stopped")


if __name__ == "__main__":
    main()


class WorkerProcess:
    """``gliner2-train-worker`` as a child of ``gliner2-serve`` (restarted if it exits, killed with it)."""

    def __init__(self, database_url: str, training_dir: Path, *, threads: int = 0, log_level: str = "INFO",
                 stale_seconds: float = 30.0):
        heartbeat = min(2.0, stale_seconds / 4)
        self.argv = [sys.executable, "-m", "gliner_server.training.worker", "--database-url", database_url,
                     "--training-dir", str(training_dir), "--log-level", log_level,
                     "--stale-seconds", str(stale_seconds), "--heartbeat-seconds", str(heartbeat),
                     *(["--threads", str(threads)] if threads else [])]
        self.process = None
        self.restarts = 0

    def start(self) -> WorkerProcess:
        import subprocess

        self.process = subprocess.Popen(self.argv, env=child_env(), stdout=subprocess.DEVNULL)
        logger.info("started gliner2-train-worker (pid %d)", self.process.pid)
        return self

    def restart_if_exited(self) -> None:
        if self.process is not None and self.process.poll() is not None and self.restarts < 100:
            logger.warning("gliner2-train-worker exited with %s; restarting it", self.process.returncode)
            self.restarts += 1
            self.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM: a running job is ended (failed, to be requested again) and the worker exits."""
        import subprocess

        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
