"""An acknowledged inference survives the server being killed with SIGKILL.

The real `gliner2-serve` is killed right after its last acknowledged answer;
a new one on the same database must list every acknowledged inference.
SQLite (a file in the data dir) and a real PostgreSQL server.
"""
from __future__ import annotations

import signal
import time

import pytest
import requests

from conftest import start_stack, stop_stack
from pg_cluster import PostgresCluster

KEY = "durability-key"


@pytest.fixture(scope="module")
def postgres():
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, postgres):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return postgres.create_database(f"durability_{int(time.time() * 1000)}")


def test_acknowledged_inferences_survive_sigkill(database_url, span_checkpoint, cache_dir, tmp_path):
    args = ("--api-key", KEY, "--database-url", database_url)
    stack = start_stack(span_checkpoint, cache_dir, tmp_path / "first", *args)
    acknowledged = []
    try:
        session = requests.Session()
        session.headers["X-API-Key"] = KEY
        for i in range(25):
            response = session.post(f"{stack.base_url}/inference", timeout=30, json={
                "text": f"Durable text number {i} about Paris.", "schema": {"entities": ["city"]},
                "project_id": "durability"})
            assert response.status_code == 200, response.text
            acknowledged.append(response.json()["id"])
    finally:
        stack.process.send_signal(signal.SIGKILL)
        stack.process.wait(timeout=30)

    again = start_stack(span_checkpoint, cache_dir, tmp_path / "second", *args)
    try:
        listed = requests.get(f"{again.base_url}/inferences", params={"project_id": "durability", "limit": 100},
                              headers={"X-API-Key": KEY}, timeout=30).json()
        assert listed["total"] == len(acknowledged)
        assert {i["id"] for i in listed["inferences"]} == set(acknowledged)
        last = requests.get(f"{again.base_url}/inferences/{acknowledged[-1]}", headers={"X-API-Key": KEY}, timeout=30)
        assert last.status_code == 200 and last.json()["text"] == "Durable text number 24 about Paris."
    finally:
        assert stop_stack(again) == 0, again.log()
