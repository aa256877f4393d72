"""Fixtures: checkpoints built here (random weights, no hub), loaded models, a running stack."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

SEED_TEXT = "Apple CEO Tim Cook announced iPhone 15 in Cupertino yesterday."


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gliner")


@pytest.fixture(scope="session")
def cache_dir(work_dir) -> Path:
    return work_dir / "cache"


@pytest.fixture(scope="session")
def span_checkpoint(work_dir) -> Path:
    from gliner_server.random_checkpoint import build_deberta_checkpoint

    return build_deberta_checkpoint(work_dir / "span-ckpt", seed=1)


@pytest.fixture(scope="session")
def boundary_checkpoint(work_dir) -> Path:
    from gliner_server.random_checkpoint import build_deberta_checkpoint

    return build_deberta_checkpoint(work_dir / "boundary-ckpt", seed=2, architecture="boundary")


@pytest.fixture(scope="session")
def big_checkpoints(work_dir) -> list[Path]:
    """Five distinct checkpoints of about 150 MB of encoder weights each: large enough that loading one takes
    seconds and that holding one more or one less shows in the server's resident memory."""
    from gliner_server.random_checkpoint import build_deberta_checkpoint

    return [build_deberta_checkpoint(work_dir / f"big-{i}", hidden=1024, layers=3, heads=8, intermediate=4096,
                                     seed=100 + i) for i in range(5)]


@pytest.fixture(scope="session")
def sentencepiece_checkpoint(work_dir) -> Path:
    """A span checkpoint with a SentencePiece unigram tokenizer (DeBERTa-v3's kind), trained here."""
    from model_fixtures import build_sentencepiece_checkpoint

    return build_sentencepiece_checkpoint(work_dir / "spm-ckpt", seed=5)


@pytest.fixture(scope="session")
def wordpiece_checkpoint(work_dir) -> Path:
    """A span checkpoint with MiniLM's WordPiece tokenizer."""
    from gliner_server.random_checkpoint import build_deberta_checkpoint, subword_tokenizer

    return build_deberta_checkpoint(work_dir / "wordpiece-ckpt", seed=6, tokenizer=subword_tokenizer())


@pytest.fixture(scope="session")
def checkpoints(span_checkpoint, boundary_checkpoint) -> dict[str, Path]:
    return {"span": span_checkpoint, "boundary": boundary_checkpoint}


_models: dict = {}


def loaded(path: Path, precision: str, cache_dir: Path, runtime: str = "auto"):
    """Loaded models are shared across the session (loading costs seconds). ``runtime="auto"`` is what the
    server does (span checkpoints: converted into a bundle, served by the lean runtime); ``"library"`` the
    gliner2 library with the OpenVINO encoder."""
    from gliner_server.runtime.loaded_model import load_model

    key = (str(path), precision, runtime)
    if key not in _models:
        _models[key] = load_model(str(path), precision=precision, cache_dir=cache_dir, runtime=runtime)
    return _models[key]


# What gliner2-serve prints on standard output once it serves (its log's "NOT_SERVING" must not count).
SERVING_LINE = b"gliner2-serve: SERVING "

API_KEY = "test-key-0123456789"
OTHER_KEY = "second-key-abcdef"


class Stack:
    def __init__(self, process, port: int, log_path: Path):
        self.process, self.port, self.log_path = process, port, log_path
        self.base_url = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        """The end of the command's output without the per-request lines (its own and Envoy's access log)."""
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines(keepends=True)
                 if " gliner2.access: " not in line and "] envoy access: " not in line]
        return "".join(lines)[-4000:]


def start_stack(checkpoint: Path | None, cache_dir: Path, run_dir: Path, *extra: str, timeout: float = 120.0,
                python: str | None = None, env: dict | None = None, poll_s: float = 0.2) -> Stack:
    """Runs the real `gliner2-serve` command (with ``python``: another environment's) and waits until it says
    SERVING, looking every ``poll_s`` seconds (a benchmark timing the start looks more often)."""
    import subprocess
    import time

    from gliner_server.envoy import free_port

    port = free_port()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "serve.log"
    model = ["--model", str(checkpoint)] if checkpoint is not None else []   # None: the --config's default
    command = [python or sys.executable, "-m", "gliner_server.cli", *model, "--port", str(port),
               "--host", "127.0.0.1", "--cache-dir", str(cache_dir), "--run-dir", str(run_dir),
               "--data-dir", str(run_dir / "data"), *extra]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=None if env is None else {**os.environ, **env})
    deadline = time.monotonic() + timeout
    while SERVING_LINE not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gliner2-serve did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(poll_s)
    return Stack(process, port, log_path)


def stop_stack(stack: Stack) -> int:
    stack.process.terminate()
    return stack.process.wait(timeout=30)


@pytest.fixture(scope="session")
def stack(span_checkpoint, cache_dir, work_dir):
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "stack", "--api-key", API_KEY,
                        "--api-key", OTHER_KEY)
    yield stack
    assert stop_stack(stack) == 0, stack.log()


@pytest.fixture(scope="session")
def reference(span_checkpoint, cache_dir):
    """The gliner2 library on the same checkpoint, PyTorch encoder, in this process."""
    return loaded(span_checkpoint, "torch", cache_dir).model
