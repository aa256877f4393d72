"""The inference-history store on a real SQLite file and a real PostgreSQL cluster."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from gliner_server.errors import ErrorKind, ServiceError
from gliner_server.history import HistoryStore, InferenceRecord, new_inference_id, resolve_database_url
from gliner_server.history.cli import main as export_main
from gliner_server.history.training import training_example
from pg_cluster import PostgresCluster, server_bin_dir

pytestmark = pytest.mark.timeout(180)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def pg_cluster():
    if server_bin_dir() is None:
        pytest.fail("PostgreSQL server binaries not installed: run scripts/install.sh as root")
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/history.db"
    return request.getfixturevalue("pg_cluster").create_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def store(db_url):
    with HistoryStore.open(db_url) as opened:
        yield opened


def make_record(client_id="alice", *, at=0, **fields) -> InferenceRecord:
    """A record created ``at`` seconds after T0."""
    values = dict(id=new_inference_id(), created_at=T0 + timedelta(seconds=at), route="/gliner-2",
                  model_id="fastino/gliner2-base-v1", task="extract_entities", client_id=client_id,
                  text="Tim Cook leads Apple.", schema={"entities": [entity("person")]},
                  parameters={"threshold": 0.5}, output={"entities": {"person": ["Tim Cook"]}},
                  latency_ms=12.5)
    values.update(fields)
    return InferenceRecord(**values)


def entity(name, description=None):
    return {"name": name, "description": description, "threshold": None, "dtype": None}


def assert_not_found(call, inference_id):
    with pytest.raises(ServiceError) as caught:
        call()
    assert caught.value.kind is ErrorKind.NOT_FOUND
    assert caught.value.message == f"Inference not found: {inference_id}"


def assert_invalid(call):
    with pytest.raises(ServiceError) as caught:
        call()
    assert caught.value.kind is ErrorKind.INVALID_REQUEST


def test_round_trip_keeps_json_exactly(store):
    output = {"result": {"zeta": [{"text": "Zürich ☃ 東京", "confidence": 0.123456789, "start": 0, "end": 6}],
                         "alpha": {"nested": [1, 2.5, None, True, {"b": "x", "a": []}]}},
              "emoji": "🙂"}
    rec = make_record(text="Zürich ☃ 東京 🙂", output=output, schema={"b": [1], "a": {"y": 1, "x": 2}},
                      parameters={"include_spans": True, "threshold": 0.35}, project_id="p1",
                      training_job_id="job-1", route="grpc:Extract", task="schema",
                      created_at=datetime(2025, 6, 1, 14, 30, 15, 123456,
                                          tzinfo=timezone(timedelta(hours=2))))
    store.record(rec)
    got = store.get("alice", rec.id)
    assert got == rec
    assert got.created_at.tzinfo == timezone.utc and got.created_at == rec.created_at
    # Key order is meaningful to GLiNER2: compare serialisations, not just equality.
    for field in ("output", "schema", "parameters"):
        assert json.dumps(getattr(got, field)) == json.dumps(getattr(rec, field))
    assert store.list("alice")[0] == [rec]
    with pytest.raises(ValueError):
        store.record(make_record(created_at=datetime(2025, 1, 1)))  # naive: refused


def test_sqlite_is_configured_for_durability(tmp_path):
    from gliner_server.history import database

    engine = database.create_engine(f"sqlite:///{tmp_path}/new/history.db", timeout_s=2.5)
    try:
        with engine.connect() as connection:
            pragmas = [connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                       for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")]
        assert pragmas == ["wal", 2, 1, 2500]  # synchronous 2 = FULL; busy waits bounded by the history timeout
    finally:
        engine.dispose()


def test_postgresql_connections_bound_every_wait(pg_cluster):
    from gliner_server.history import database

    engine = database.create_engine(pg_cluster.url, timeout_s=2.5)
    try:
        with engine.connect() as connection:
            settings = [connection.exec_driver_sql(f"SHOW {name}").scalar()
                        for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")]
        assert settings == ["2500ms", "2500ms", "1min"]
    finally:
        engine.dispose()


def test_list_newest_first_with_filters_and_pagination(store):
    records = [
        make_record(at=1, model_id="m1", task="extract_entities", project_id="p1"),
        make_record(at=2, model_id="m2", task="classify_text", project_id="p1", training_job_id="j1"),
        make_record(at=3, model_id="m1", task="extract_json", training_job_id="j1"),
        make_record(at=4, model_id="m2", task="extract_entities", project_id="p2"),
        make_record(at=4, model_id="m1", task="classify_text"),  # same instant: id breaks the tie
        make_record(at=5, model_id="m1", task="schema", project_id="p2", training_job_id="j2"),
    ]
    for rec in records:
        store.record(rec)
    newest_first = sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)

    assert store.list("alice") == (newest_first, 6)
    for page_start in (0, 2, 4):
        assert store.list("alice", limit=2, offset=page_start) == (newest_first[page_start:page_start + 2], 6)
    assert store.list("alice", limit=4, offset=5) == (newest_first[5:], 6)
    assert store.list("alice", offset=6) == ([], 6)

    for name, value in (("model_id", "m1"), ("task", "classify_text"), ("project_id", "p2"),
                        ("training_job_id", "j1")):
        expected = [r for r in newest_first if getattr(r, name) == value]
        assert store.list("alice", **{name: value}) == (expected, len(expected)), name
    assert store.list("alice", model_id="m1", project_id="p2", limit=1) == (
        [r for r in newest_first if r.model_id == "m1" and r.project_id == "p2"], 1)
    assert store.list("alice", model_id="m2", limit=1, offset=1) == (
        [r for r in newest_first if r.model_id == "m2"][1:], 2)

    for bad in (dict(limit=0), dict(limit=1001), dict(limit="5"), dict(limit=True), dict(offset=-1)):
        assert_invalid(lambda: store.list("alice", **bad))


def test_clients_only_see_their_own(store):
    mine, theirs = make_record("alice"), make_record("bob", at=1)
    store.record(mine)
    store.record(theirs)
    store.add_feedback("bob", theirs.id, "correct")

    assert store.list("alice") == ([mine], 1)
    assert store.list("bob") == ([theirs], 1)
    assert store.list("carol") == ([], 0)
    for missing in (theirs.id, "inf_unknown"):
        assert_not_found(lambda: store.get("alice", missing), missing)
        assert_not_found(lambda: store.get_with_feedback("alice", missing), missing)
        assert_not_found(lambda: store.add_feedback("alice", missing, "correct"), missing)
        assert_not_found(lambda: store.feedback("alice", missing), missing)
        assert_not_found(lambda: store.current_feedback("alice", missing), missing)
    assert store.current_feedback_many("alice", [mine.id, theirs.id]) == {}
    assert len(store.feedback("bob", theirs.id)) == 1  # alice's attempt added nothing


def test_feedback_is_validated_kept_and_latest_is_current(store):
    rec = make_record()
    store.record(rec)
    assert store.current_feedback("alice", rec.id) is None
    assert store.get_with_feedback("alice", rec.id) == (rec, None)

    for verdict, corrected in (("maybe", None), ("incorrect", None), ("incorrect", ["Tim Cook"]),
                               ("incorrect", "Tim Cook"), ("correct", {"entities": {}})):
        assert_invalid(lambda: store.add_feedback("alice", rec.id, verdict, corrected))
    assert store.feedback("alice", rec.id) == []

    first = store.add_feedback("alice", rec.id, "correct")
    correction = {"entities": {"person": ["Tim Cook"], "company": ["Apple"]}}
    second = store.add_feedback("alice", rec.id, "incorrect", correction)
    assert (first.verdict, first.corrected_output) == ("correct", None)
    assert (second.verdict, second.corrected_output, second.client_id) == ("incorrect", correction, "alice")
    assert store.feedback("alice", rec.id) == [first, second]
    assert store.current_feedback("alice", rec.id) == second
    assert store.get_with_feedback("alice", rec.id) == (rec, second)
    third = store.add_feedback("alice", rec.id, "correct")
    assert store.feedback("alice", rec.id) == [first, second, third]
    assert store.current_feedback_many("alice", [rec.id, "inf_other"]) == {rec.id: third}


# -- export -----------------------------------------------------------------

NEWS = "Tim Cook is the CEO of Apple in Cupertino. Great quarter!"
NEWS_SCHEMA = {
    "entities": [entity("person", "a human"), entity("company"), entity("location")],
    "entity_dtype": "list", "entity_threshold": None,
    "classifications": [
        {"name": "sentiment", "labels": ["positive", "negative", "neutral"], "label_descriptions": None,
         "multi_label": False, "cls_threshold": 0.5},
        {"name": "topics", "labels": ["business", "tech", "sports"],
         "label_descriptions": {"tech": "technology"}, "multi_label": True, "cls_threshold": 0.5},
    ],
    "structures": [],
    "relations": [{"name": "works_for", "description": None, "threshold": None}],
    "relation_threshold": None,
}


def span(text, start, confidence=0.9):
    return {"text": text, "confidence": confidence, "start": start, "end": start + len(text)}


# As the library formats it with include_confidence and include_spans.
NEWS_OUTPUT = {
    "entities": {"person": [span("Tim Cook", 0)], "company": [span("Apple", 23), span("Apple", 23, 0.6)],
                 "location": []},
    "sentiment": {"label": "positive", "confidence": 0.81},
    "topics": [{"label": "business", "confidence": 0.7}, {"label": "tech", "confidence": 0.55}],
    "relation_extraction": {"works_for": [{"head": span("Tim Cook", 0), "tail": span("Apple", 23)}]},
}

PRODUCT = "The iPhone 15 Pro costs $999 and comes in black titanium."
PRODUCT_SCHEMA = {
    "entities": [], "entity_dtype": "list", "entity_threshold": None, "classifications": [],
    "structures": [
        {"name": "product", "json_api": True, "fields": [
            {"name": "name", "dtype": "str", "choices": None, "description": "Product name", "threshold": None},
            {"name": "price", "dtype": "str", "choices": None, "description": None, "threshold": None},
            {"name": "color", "dtype": "str", "choices": ["black", "white"], "description": None,
             "threshold": None},
            {"name": "materials", "dtype": "list", "choices": None, "description": None, "threshold": None},
            {"name": "finish", "dtype": "list", "choices": ["matte", "glossy"], "description": None,
             "threshold": None},
        ]},
        {"name": "store", "json_api": True, "fields": [
            {"name": "city", "dtype": "str", "choices": None, "description": None, "threshold": None}]},
    ],
    "relations": [], "relation_threshold": None,
}
PRODUCT_OUTPUT = {"product": [{"name": "iPhone 15 Pro", "price": "15", "color": None, "materials": []}],
                  "store": []}
PRODUCT_CORRECTION = {"product": [{"name": "iPhone 15 Pro", "price": "$999", "color": "black",
                                   "materials": ["titanium"], "finish": ["matte"]}], "store": []}

PEOPLE = "Satya Nadella leads Microsoft."
PEOPLE_SCHEMA = {**NEWS_SCHEMA, "entities": [entity("person"), entity("company")], "classifications": [],
                 "relations": [{"name": "works_for", "description": None, "threshold": None},
                               {"name": "founded", "description": None, "threshold": None}]}
PEOPLE_OUTPUT = {"entities": {"person": ["Satya Nadella"], "company": ["Microsoft"]},
                 "relation_extraction": {"works_for": [["Satya Nadella", "Microsoft"]], "founded": []}}


def test_training_example_reads_every_output_shape():
    schema = {
        "entities": [entity("person")], "entity_dtype": "str",
        "classifications": [{"name": "tone", "labels": ["formal", "casual"], "label_descriptions": None,
                             "multi_label": True, "cls_threshold": 0.5},
                            {"name": "mood", "labels": ["calm", "tense"], "label_descriptions": None,
                             "multi_label": False, "cls_threshold": 0.5}],
        "structures": [{"name": "meeting", "json_api": False, "fields": [
            {"name": "who", "dtype": "list", "choices": None, "description": None, "threshold": None},
            {"name": "where", "dtype": "str", "choices": None, "description": None, "threshold": None},
            {"name": "kind", "dtype": "str", "choices": ["call", "visit"], "description": None, "threshold": None},
            {"name": "topics", "dtype": "list", "choices": ["a", "b", "c"], "description": None,
             "threshold": None}]}],
        "relations": [{"name": "met", "description": None, "threshold": None}],
    }
    with_confidence = {
        "entities": {"person": {"text": "Ann", "confidence": 0.9}},
        "tone": [{"label": "formal", "confidence": 0.8}], "mood": {"label": "calm", "confidence": 0.7},
        "meeting": [{"who": [{"text": "Ann", "confidence": 0.9}, {"text": "Bob", "confidence": 0.7}],
                     "where": {"text": "Paris", "confidence": 0.6}, "kind": {"text": "visit", "confidence": 0.9},
                     "topics": [{"text": "a", "confidence": 0.7}, {"text": "b", "confidence": 0.6}]}],
        "relation_extraction": {"met": [{"head": {"text": "Ann", "confidence": 0.9},
                                         "tail": {"text": "Bob", "confidence": 0.8}}]},
        "unknown_key": "ignored",
    }
    assert training_example("Ann met Bob in Paris.", schema, with_confidence) == {
        "input": "Ann met Bob in Paris.", "output": {
            "entities": {"person": ["Ann"]},
            "classifications": [
                {"task": "tone", "labels": ["formal", "casual"], "true_label": ["formal"], "multi_label": True},
                {"task": "mood", "labels": ["calm", "tense"], "true_label": ["calm"]}],
            "json_structures": [{"meeting": {
                "who": ["Ann", "Bob"], "where": "Paris", "kind": {"value": "visit", "choices": ["call", "visit"]},
                "topics": {"value": ["a", "b"], "choices": ["a", "b", "c"]}}}],
            "relations": [{"met": {"head": "Ann", "tail": "Bob"}}]}}
    nothing_found = {"entities": {"person": None}, "tone": [], "mood": None, "meeting": [],
                     "relation_extraction": {"met": []}}
    assert training_example("Nobody.", schema, nothing_found)["output"] == {
        "entities": {"person": []},  # a negative for the type
        "classifications": [{"task": "tone", "labels": ["formal", "casual"], "true_label": [],
                             "multi_label": True}],  # no label is an answer only when multi-label
        "json_structures": [{"meeting": {"who": None, "where": None}}]}  # "no meeting"
    assert training_example("x", {"relations": [{"name": "met"}]}, {"relation_extraction": {}}) is None
    assert training_example("x", schema, ["not", "an", "object"]) is None


def seed_feedback(store) -> dict[str, InferenceRecord]:
    """Inferences of every kind with feedback of every kind (plus ones the export skips)."""
    recs = {
        "news": make_record(at=1, text=NEWS, schema=NEWS_SCHEMA, output=NEWS_OUTPUT, task="schema"),
        "product": make_record(at=2, text=PRODUCT, schema=PRODUCT_SCHEMA, output=PRODUCT_OUTPUT,
                               task="extract_json"),
        "people": make_record(at=3, text=PEOPLE, schema=PEOPLE_SCHEMA, output=PEOPLE_OUTPUT, task="schema"),
        "private": make_record(at=4, text=NEWS, schema=NEWS_SCHEMA, output=NEWS_OUTPUT, privacy=True),
        "no_feedback": make_record(at=5),
        "bob": make_record("bob", at=6, text=PEOPLE, schema=PEOPLE_SCHEMA, output=PEOPLE_OUTPUT),
    }
    for rec in recs.values():
        store.record(rec)
    store.add_feedback("alice", recs["news"].id, "correct")
    store.add_feedback("alice", recs["product"].id, "incorrect", PRODUCT_CORRECTION)
    store.add_feedback("alice", recs["people"].id, "incorrect", {"entities": {"person": [], "company": []}})
    store.add_feedback("alice", recs["people"].id, "correct")  # the latest verdict counts
    store.add_feedback("alice", recs["private"].id, "correct")
    store.add_feedback("bob", recs["bob"].id, "correct")
    return recs


def test_privacy_records_are_listed_without_text_and_not_exported(store):
    rec = make_record(privacy=True)  # the store drops text and output even if given
    store.record(rec)
    stored = store.get("alice", rec.id)
    assert (stored.text, stored.output, stored.privacy) == (None, None, True)
    assert stored.schema == rec.schema and stored.parameters == rec.parameters
    assert store.list("alice") == ([stored], 1)
    store.add_feedback("alice", rec.id, "correct")
    assert store.export_training_jsonl(io.StringIO()) == 0


def test_export_loads_with_the_gliner2_training_loader(store, tmp_path):
    from gliner2.training.data import ChoiceField, InputExample, TrainingDataset

    seed_feedback(store)
    path = tmp_path / "train.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        assert store.export_training_jsonl(out, client_id="alice") == 3
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"input": NEWS, "output": {
        "entities": {"person": ["Tim Cook"], "company": ["Apple"], "location": []},
        "entity_descriptions": {"person": "a human"},
        "classifications": [
            {"task": "sentiment", "labels": ["positive", "negative", "neutral"], "true_label": ["positive"]},
            {"task": "topics", "labels": ["business", "tech", "sports"], "true_label": ["business", "tech"],
             "multi_label": True, "label_descriptions": {"tech": "technology"}}],
        "relations": [{"works_for": {"head": "Tim Cook", "tail": "Apple"}}]}}

    dataset = TrainingDataset.load(path)
    assert dataset.validate()["invalid"] == 0  # strict: every mention is found in its text
    news, product, people = dataset.examples
    assert (news.to_dict(), people.to_dict()) == (lines[0], lines[2])

    assert news.text == NEWS
    assert news.entities == {"person": ["Tim Cook"], "company": ["Apple"], "location": []}
    assert [(c.task, c.labels, c.true_label, c.multi_label) for c in news.classifications] == [
        ("sentiment", ["positive", "negative", "neutral"], ["positive"], False),
        ("topics", ["business", "tech", "sports"], ["business", "tech"], True)]
    assert [(r.name, r.head, r.tail) for r in news.relations] == [("works_for", "Tim Cook", "Apple")]

    assert product.text == PRODUCT  # the correction, not the recorded output
    (found, absent) = product.structures
    assert found.struct_name == "product" and found.descriptions == {"name": "Product name"}
    assert found._fields == {"name": "iPhone 15 Pro", "price": "$999",
                             "color": ChoiceField("black", ["black", "white"]), "materials": ["titanium"],
                             "finish": ChoiceField("matte", ["matte", "glossy"])}
    assert (absent.struct_name, absent._fields) == ("store", {"city": None})  # trains "no store"

    assert people.entities == {"person": ["Satya Nadella"], "company": ["Microsoft"]}
    assert [(r.name, r.head, r.tail) for r in people.relations] == [("works_for", "Satya Nadella", "Microsoft")]
    assert InputExample.from_dict(lines[1]).to_dict()["output"]["json_structures"] == lines[1]["output"][
        "json_structures"]

    everyone = io.StringIO()
    assert store.export_training_jsonl(everyone) == 4  # bob's too
    assert store.export_training_jsonl(io.StringIO(), client_id="carol") == 0


def test_export_command(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/data/history.db"
    with HistoryStore.open(url) as store:
        seed_feedback(store)
    out = tmp_path / "feedback.jsonl"
    assert export_main(["--data-dir", str(tmp_path / "data"), "--client-id", "bob", "--out", str(out)]) == 0
    assert "exported 1 training example" in capsys.readouterr().err
    assert json.loads(out.read_text())["input"] == PEOPLE
    monkeypatch.setenv("GLINER2_DATABASE_URL", url)
    assert export_main([]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    monkeypatch.delenv("GLINER2_DATABASE_URL")
    assert resolve_database_url(None, tmp_path / "d") == f"sqlite:///{tmp_path}/d/history.db"
    with pytest.raises(SystemExit):
        export_main(["--data-dir", str(tmp_path / "nowhere")])


# -- concurrency, migrations, durability ----------------------------------------

def test_concurrent_writers_lose_nothing(store):
    written: list[str] = []
    errors: list[BaseException] = []

    def writer(n):
        try:
            for i in range(50):
                rec = make_record("writers", at=i, task=f"t{n}")
                store.record(rec)
                written.append(rec.id)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    listed, total = store.list("writers", limit=1000)
    assert total == 400 and sorted(r.id for r in listed) == sorted(written)


def test_migrations_are_idempotent_and_safe_to_race(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gliner_server.history.tables import metadata

    opened, errors = [], []

    def open_store():
        try:
            opened.append(HistoryStore.open(db_url))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rec = make_record()
    opened[0].record(rec)
    for store in opened:
        store.close()
    with HistoryStore.open(db_url) as again:  # once more, on a migrated database
        assert again.get("alice", rec.id) == rec

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == ["0004"]
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    finally:
        engine.dispose()


CHILD = """
import sys
from gliner_server.history import HistoryStore, InferenceRecord, new_inference_id, utc_now
store = HistoryStore.open(sys.argv[1])
for i in range(1_000_000):
    rec = InferenceRecord(id=new_inference_id(), created_at=utc_now(), route="/gliner-2", model_id="m",
                          task="extract_entities", client_id="durable", text=f"text {i}", schema=None,
                          parameters=None, output={"i": i}, latency_ms=1.0)
    store.record(rec)
    print(rec.id, flush=True)
"""


def test_acknowledged_writes_survive_sigkill(db_url):
    child = subprocess.Popen([sys.executable, "-c", CHILD, db_url], stdout=subprocess.PIPE, text=True)
    try:
        acknowledged = [child.stdout.readline().strip() for _ in range(40)]
        os.kill(child.pid, signal.SIGKILL)
        acknowledged += [line.strip() for line in child.stdout if line.strip()]
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert all(i.startswith("inf_") for i in acknowledged)
    with HistoryStore.open(db_url) as store:
        for inference_id in acknowledged:
            assert store.get("durable", inference_id).id == inference_id
        assert store.list("durable")[1] >= len(acknowledged)


def test_concurrent_writers_share_commits_and_every_row_is_stored(store):
    """Group commit: 40 concurrent writers, fewer transactions than writers, no row lost."""
    from concurrent.futures import ThreadPoolExecutor

    gate = threading.Barrier(8)

    def write(i):
        if i < 8:
            gate.wait(5)
        store.record_many([make_record(client_id="c", text=f"text {i} {j}") for j in range(2)])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(40)))
    records, total = store.list("c", limit=1000)
    assert total == 80 and sorted(r.text for r in records) == sorted(f"text {i} {j}" for i in range(40)
                                                                      for j in range(2))
    assert store._writes.groups < 40


def test_a_failing_row_fails_only_its_own_writer():
    from gliner_server.history.group_commit import GroupCommit

    committed = []

    def commit(rows):
        if "bad" in rows:
            raise ValueError("bad row")
        committed.extend(rows)

    writer = GroupCommit(commit)
    # Simulate a group formed while another writer was committing.
    from gliner_server.history.group_commit import _Ticket
    group = [_Ticket(["a"]), _Ticket(["bad"]), _Ticket(["c"])]
    writer._commit_group(group)
    assert committed == ["a", "c"]
    assert [t.error is not None for t in group] == [False, True, False]
    with pytest.raises(ValueError):
        writer.write(["bad"])
    writer.write(["d"])
    assert committed[-1] == "d"


# -- a database that does not answer ---------------------------------------------

def test_a_stuck_commit_times_out_its_callers_and_the_writer_carries_on():
    from gliner_server.history.group_commit import CommitTimeout, GroupCommit

    gate, committed = threading.Event(), []

    def commit(rows):
        if "stuck" in rows:
            assert gate.wait(10)
        committed.extend(rows)
        return [f"id-{row}" for row in rows]

    writer = GroupCommit(commit)
    outcomes = {}
    stuck = threading.Thread(target=lambda: outcomes.setdefault("stuck", _attempt(writer, ["stuck"], 0.2)))
    stuck.start()
    assert wait_until(lambda: writer.busy_for() is not None)
    queued = _attempt(writer, ["queued"], 0.2)   # waits behind the stuck commit, then gives up
    stuck.join(5)
    assert isinstance(outcomes["stuck"], CommitTimeout) and outcomes["stuck"].in_flight
    assert isinstance(queued, CommitTimeout) and not queued.in_flight
    assert writer.busy_for() >= 0.2 and writer.queued() == 0   # the dropped rows are gone, never committed
    gate.set()
    assert writer.write(["after"], timeout=5) == ["id-after"]
    assert committed == ["stuck", "after"] and writer.busy_for() is None and writer.failing_for() is None


def _attempt(writer, rows, timeout):
    try:
        return writer.write(rows, timeout=timeout)
    except Exception as error:  # noqa: BLE001 - inspected by the test
        return error


def wait_until(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_the_store_refuses_new_inferences_at_once_while_a_commit_is_stuck(tmp_path):
    """The history a request would be recorded in is stuck: refuse before any model work (503), then recover."""
    import time

    url = f"sqlite:///{tmp_path}/history.db"
    with HistoryStore.open(url, timeout_s=0.3) as store:
        store.check_writable()
        gate = threading.Event()
        original = store._writes.commit
        store._writes.commit = lambda rows: (gate.wait(10), original(rows))[1]
        first = threading.Thread(target=lambda: _attempt_record(store))
        first.start()
        assert wait_until(lambda: store._writes.busy_for() is not None and store._writes.busy_for() > 0.35)
        started = time.monotonic()
        with pytest.raises(ServiceError) as refused:
            store.check_writable()
        assert refused.value.kind is ErrorKind.UNAVAILABLE and time.monotonic() - started < 0.05
        assert "waiting for the database" in refused.value.message and refused.value.retry_after_s >= 1
        assert store.stalled_for()[0] > 0.3
        with pytest.raises(ServiceError) as timed_out:
            store.record(make_record())
        assert timed_out.value.kind is ErrorKind.UNAVAILABLE and "not acknowledged" in timed_out.value.message
        gate.set()
        first.join(5)
        assert wait_until(lambda: store._writes.busy_for() is None)
        store._writes.commit = original
        store.check_writable()
        rec = make_record()
        store.record(rec)
        assert store.get("alice", rec.id) == rec and store.stalled_for() is None


def _attempt_record(store):
    try:
        store.record(make_record())
    except ServiceError:
        pass


def test_reads_of_a_database_that_does_not_answer_are_503_within_the_timeout(tmp_path):
    import time

    with HistoryStore.open(f"sqlite:///{tmp_path}/history.db", timeout_s=0.3, io_threads=1) as store:
        gate = threading.Event()
        original = store._transaction

        def stuck(*args, **kwargs):
            gate.wait(10)
            return original(*args, **kwargs)

        store._transaction = stuck
        started = time.monotonic()
        for _ in range(3):   # the one history thread is stuck: later calls wait in its queue, and time out too
            with pytest.raises(ServiceError) as caught:
                store.list("alice")
            assert caught.value.kind is ErrorKind.UNAVAILABLE and "did not answer within 0.3s" in caught.value.message
        assert time.monotonic() - started < 2.0
        gate.set()
        store._transaction = original
        assert store.list("alice") == ([], 0)


def test_a_failing_database_is_probed_until_it_takes_writes_again(tmp_path):
    with HistoryStore.open(f"sqlite:///{tmp_path}/history.db", timeout_s=1.0) as store:
        failing = [True]
        original_insert, original_probe = store._writes.commit, store._write_heartbeat

        def insert(rows):
            if failing[0]:
                raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
            return original_insert(rows)

        def heartbeat():
            if failing[0]:
                raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
            original_probe()

        store._writes.commit, store._write_heartbeat = insert, heartbeat
        with pytest.raises(ServiceError) as refused:
            store.record(make_record())
        assert refused.value.kind is ErrorKind.UNAVAILABLE and "refused the record" in refused.value.message
        assert store.stalled_for() is not None and "failing" in store.stalled_for()[1]
        with pytest.raises(ServiceError):
            store.check_writable()     # for a second after a failure: refused before any model work
        assert store.probe() is False and store.stalled_for() is not None
        failing[0] = False
        assert store.probe() is True and store.stalled_for() is None
        store.check_writable()
        store.record(make_record())


def test_an_export_streams_in_pages(store):
    for i in range(1200):
        rec = make_record(client_id="exporter", at=i, text=f"Tim Cook {i} leads Apple.")
        store.record(rec)
        store.add_feedback("exporter", rec.id, "correct")
    pages = list(store.export_training_pages(client_id="exporter", page_rows=500))
    assert [len(page) for page in pages] == [500, 500, 200]
    texts = [json.loads(line)["input"] for page in pages for line in page]
    assert texts == [f"Tim Cook {i} leads Apple." for i in range(1200)]   # in order, each once


def test_an_export_larger_than_the_grpc_message_limit_arrives_whole(tmp_path):
    """ExportFeedback streams: an export of many times the server's message limit reaches the client."""
    import grpc

    from gliner_client.v1 import history_service_pb2, history_service_pb2_grpc
    from gliner_server.core.recording import RecordingEngine
    from gliner_server.grpc_api.server import GrpcServer

    with HistoryStore.open(f"sqlite:///{tmp_path}/history.db") as store:
        for i in range(1500):
            rec = make_record(client_id="anonymous", at=i, text=f"Tim Cook {i} leads Apple. " + "x" * 400)
            store.record(rec)
            store.add_feedback("anonymous", rec.id, "correct")
        server = GrpcServer(RecordingEngine(None, store), address="127.0.0.1:0", max_send_bytes=128 * 1024)
        server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = history_service_pb2_grpc.InferenceHistoryServiceStub(channel)
                messages = list(stub.ExportFeedback(history_service_pb2.ExportFeedbackRequest(), timeout=60))
        finally:
            server.stop(0)
    data = b"".join(m.data for m in messages)
    assert len(data) > 4 * 128 * 1024 and len(messages) >= 3
    assert {m.content_type for m in messages} == {"application/x-ndjson"}
    lines = data.decode().splitlines()
    assert len(lines) == 1500 and json.loads(lines[-1])["input"].startswith("Tim Cook 1499 ")
