"""The OpenAPI description matches the protos, and schemathesis fuzzes the live stack from it.

Every generated request (valid and invalid bodies, parameters and path
values, for every route) must get an answer that is not a server error, whose
status, content type and body the description documents, and every error must
have the provider's shape.
"""
from __future__ import annotations

import collections

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from conftest import API_KEY, start_stack, stop_stack

from gliner_server.envoy.descriptors import descriptor_set, http_rules
from gliner_server.grpc_api.server import PROTO_MODULES, SERVICE_NAMES
from gliner_server.openapi import service_document

DOCUMENT = service_document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
MIN_CASES = 600


def test_every_http_rule_is_an_operation_and_nothing_else_is():
    rules = {(method, template) for method, template in http_rules(descriptor_set(PROTO_MODULES), SERVICE_NAMES)}
    operations = {(method.upper(), path) for path, methods in DOCUMENT["paths"].items() for method in methods}
    assert operations == rules and len(rules) >= 10


def test_typed_bodies_follow_the_proto_messages():
    extract = DOCUMENT["paths"]["/v1/extract"]["post"]
    ref = extract["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/gliner_v1_ExtractRequest"
    body = DOCUMENT["components"]["schemas"]["gliner_v1_ExtractRequest"]["properties"]
    assert set(body) == {"text", "schema", "threshold", "model_id", "project_id", "training_job_id", "privacy_mode"}
    response = DOCUMENT["components"]["schemas"]["gliner_v1_ExtractResponse"]["properties"]
    assert response["chunks"] == {"type": "integer", "format": "int32"}
    listing = {p["name"] for p in DOCUMENT["paths"]["/inferences"]["get"]["parameters"]}
    assert listing == {"limit", "offset", "model_id", "task", "project_id", "training_job_id"}
    assert DOCUMENT["paths"]["/inferences/{id}"]["get"]["parameters"][0]["in"] == "path"


@pytest.fixture(scope="module")
def fuzz_stack(span_checkpoint, cache_dir, work_dir):
    stack = start_stack(span_checkpoint, cache_dir, work_dir / "fuzz-stack", "--api-key", API_KEY,
                        "--max-texts", "8", "--max-text-chars", "2000")
    yield stack
    assert stop_stack(stack) == 0, stack.log()


def test_fuzzed_requests_get_documented_answers_and_no_server_error(fuzz_stack):
    """Every operation, valid and invalid requests (40 of each kind at most), checked one by one; then the
    count of what was sent, in the same test (so it never depends on another test having run before)."""
    from schemathesis import GenerationMode

    seen: collections.Counter = collections.Counter()
    for result in SCHEMA.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_cases(operation.as_strategy(mode), fuzz_stack, seen)
        seen["operations"] += 1
    print(f"schemathesis: {dict(seen)}")
    assert seen["operations"] >= 10 and seen["cases"] >= MIN_CASES and seen["5xx"] == 0, dict(seen)
    assert requests.get(fuzz_stack.base_url + "/healthz", timeout=10).status_code == 200  # still up


def run_cases(strategy, fuzz_stack, seen):
    from hypothesis import given

    @settings(max_examples=40, deadline=None, phases=[Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        response = case.call(base_url=fuzz_stack.base_url, headers={"X-API-Key": API_KEY}, timeout=120)
        seen["cases"] += 1
        seen[f"{response.status_code // 100}xx"] += 1
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 content_type_conformance, response_schema_conformance])
        if response.status_code >= 400:
            body = response.json()
            assert body["error"]["code"] and body["error"]["message"] == body["detail"], body

    check()
