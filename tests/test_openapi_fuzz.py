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
SEEN: collections.Counter = collections.Counter()
MIN_CASES = 200


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


@SCHEMA.parametrize()
@settings(max_examples=40, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_get_documented_answers_and_no_server_error(case, fuzz_stack):
    response = case.call(base_url=fuzz_stack.base_url, headers={"X-API-Key": API_KEY}, timeout=120)
    SEEN["cases"] += 1
    SEEN[f"{response.status_code // 100}xx"] += 1
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance, response_schema_conformance])
    if response.status_code >= 400:
        body = response.json()
        assert body["error"]["code"] and body["error"]["message"] == body["detail"], body


def test_enough_cases_were_fuzzed_and_none_was_a_server_error(fuzz_stack):
    print(f"schemathesis: {dict(SEEN)}")
    assert SEEN["cases"] >= MIN_CASES and SEEN["5xx"] == 0, dict(SEEN)
    assert requests.get(fuzz_stack.base_url + "/healthz", timeout=10).status_code == 200  # still up
