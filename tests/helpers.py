"""Comparison helpers shared by the tests."""
from __future__ import annotations

import json
import math
import time

SCORE_TOLERANCE = 1e-4  # OpenVINO f32 vs PyTorch drift is ~1e-6


def jsonable(value):
    """What a JSON round trip makes of a library result (tuples become lists)."""
    return json.loads(json.dumps(value))


def assert_match(actual, expected, path="$"):
    """Equal structure, equal strings and ints; floats equal within SCORE_TOLERANCE."""
    actual, expected = jsonable(actual), jsonable(expected)
    _match(actual, expected, path)


def _match(a, e, path):
    if isinstance(e, float) or isinstance(a, float):
        assert isinstance(a, (int, float)) and isinstance(e, (int, float)), f"{path}: {a!r} != {e!r}"
        assert math.isclose(a, e, abs_tol=SCORE_TOLERANCE), f"{path}: {a} != {e}"
    elif isinstance(e, dict):
        assert isinstance(a, dict), f"{path}: expected an object, got {a!r}"
        assert list(a) == list(e), f"{path}: keys {list(a)} != {list(e)}"
        for key in e:
            _match(a[key], e[key], f"{path}.{key}")
    elif isinstance(e, list):
        assert isinstance(a, list) and len(a) == len(e), f"{path}: {a!r} != {e!r}"
        for i, (x, y) in enumerate(zip(a, e)):
            _match(x, y, f"{path}[{i}]")
    else:
        assert a == e, f"{path}: {a!r} != {e!r}"


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class Load:
    """``clients`` threads posting ``body`` to ``path`` until stopped; every answer as an :class:`Answer`."""

    def __init__(self, base_url: str, path: str, body: dict, *, key: str, clients: int = 4, timeout: float = 60,
                 headers: dict | None = None):
        import threading

        self.url, self.body, self.key, self.timeout = base_url + path, body, key, timeout
        self.headers = headers or {}
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.running = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self):
        import requests

        session = requests.Session()
        session.headers.update({"X-API-Key": self.key, **self.headers})
        while self.running.is_set():
            started = time.monotonic()
            try:
                response = session.post(self.url, json=self.body, timeout=self.timeout)
                answer = Answer.of(started, response)
            except requests.RequestException as error:
                answer = Answer(started, time.monotonic(), type(error).__name__)
                time.sleep(0.05)  # the port is closed: do not spin
            with self.lock:
                self.answers.append(answer)

    def __enter__(self):
        self.running.set()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.running.clear()
        for thread in self.threads:
            thread.join(90)

    def snapshot(self) -> list["Answer"]:
        with self.lock:
            return list(self.answers)

    def between(self, start: float, end: float) -> list["Answer"]:
        """Answers to requests sent between two moments (time.monotonic())."""
        return [a for a in self.snapshot() if start <= a.started < end]


class Answer:
    """One request: when it was sent and answered, the HTTP status (or the exception's name), the body."""

    def __init__(self, started: float, ended: float, status, body=None, headers=None):
        self.started, self.ended, self.status, self.body, self.headers = started, ended, status, body, headers or {}

    @classmethod
    def of(cls, started: float, response) -> "Answer":
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return cls(started, time.monotonic(), response.status_code, body, dict(response.headers))

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def code(self) -> str | None:
        """The provider error code of an error answer."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.code}, {self.seconds:.2f}s)"


class HealthPoller:
    """Polls a gRPC server's health (directly, not through Envoy) in a thread: (time, status name) samples."""

    def __init__(self, address: str, interval: float = 0.1, service: str = ""):
        import threading

        self.address, self.interval, self.service = address, interval, service
        self.samples: list[tuple[float, str]] = []
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while self.running.is_set():
                try:
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(
                        stub.Check(health_pb2.HealthCheckRequest(service=self.service), timeout=1).status)
                except grpc.RpcError as error:
                    status = error.code().name
                self.samples.append((time.monotonic(), status))
                time.sleep(self.interval)

    def __enter__(self):
        self.running.set()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running.clear()
        self.thread.join(10)

    def statuses(self, start: float = 0.0, end: float = float("inf")) -> list[str]:
        return [status for at, status in list(self.samples) if start <= at < end]

    def first(self, status: str, after: float = 0.0) -> float | None:
        """When ``status`` was first seen after ``after``."""
        return next((at for at, seen in list(self.samples) if at >= after and seen == status), None)


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (Linux /proc)."""
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


FIXED_LABELS = ["person", "company", "location", "product"]


def varied_traffic(base_url: str, key: str, count: int, *, seed: int, unique_labels: bool, clients: int = 4,
                   every: int = 0, on_every=None) -> None:
    """``count`` ordinary ``/gliner-2`` calls from ``clients`` threads: random texts of 3–60 words and, with
    ``unique_labels``, labels no other call used. ``on_every(n)`` runs after every ``every``-th call."""
    import random
    import string
    import threading

    import requests

    lock, sent, failures = threading.Lock(), [0], []

    def client(n: int):
        rng = random.Random(seed * 1000 + n)
        session = requests.Session()
        session.headers["X-API-Key"] = key
        while True:
            with lock:
                if sent[0] >= count or failures:
                    return
                sent[0] += 1
                index = sent[0]
            words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 10)))
                     for _ in range(rng.randint(3, 60))]
            labels = ([f"kind_{seed}_{rng.randint(0, 10**9)}" for _ in range(rng.randint(1, 6))] if unique_labels
                      else FIXED_LABELS)
            response = session.post(base_url + "/gliner-2", json={"text": " ".join(words), "labels": labels},
                                    timeout=120)
            if response.status_code != 200:
                failures.append(response.text)
            if every and on_every is not None and index % every == 0:
                on_every(index)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]


def fault_window(start, end, seconds: float) -> tuple[float, float]:
    """``start()``, ``seconds`` of the fault, ``end()`` (also if interrupted); when it began and ended."""
    began = time.monotonic()
    start()
    try:
        time.sleep(seconds)
    finally:
        ended = time.monotonic()
        end()
    return began, ended


def served_entities(model, text: str, labels, *, threshold: float = 0.5, include_confidence: bool = False,
                    include_spans: bool = False) -> dict:
    """``extract_entities`` on a served :class:`LoadedModel` (lean or library runtime), as the engine runs it."""
    return model.extract([text], entity_schema(model, labels), threshold=threshold, format_results=True,
                         include_confidence=include_confidence, include_spans=include_spans)[0]


def entity_schema(model, labels):
    """The schema a served model runs for these entity labels (the library's Schema, or the lean runtime's)."""
    from gliner_server.core.schema import build_schema, to_library_schema

    return to_library_schema(build_schema(entities=[{"name": label} for label in labels]), model.model)
