"""schemathesis against the service's own OpenAPI schema: no input makes the server fail (5xx).

Cases are generated from the schema the live server publishes, a bounded number per
operation, seeded (derandomized) so that CI runs are repeatable.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

EXAMPLES_PER_OPERATION = 12
#: 503/504 are the service's documented load-shedding answers, never crashes.
LOAD_CODES = {"overloaded", "deadline_exceeded", "loading"}


def test_no_server_errors(live_server):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17
    seen: list[tuple[str, str, int]] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call(headers=live_server.headers, timeout=60)
            seen.append((case.method, case.path, response.status_code))
            if response.status_code >= 500:
                code = _error_code(case.path, response.json())
                assert response.status_code in (503, 504) and code in LOAD_CODES, (
                    case.method, case.formatted_path, response.status_code, response.text[:500])

        run()
    assert len({(m, p) for m, p, _ in seen}) == len(operations)
    assert any(code == 200 for *_, code in seen)


def _error_code(path: str, body: dict) -> str | None:
    """visor's error code, or for the DeepStack routes (whose ``error`` is a string) the 503/504 text's code."""
    error = body.get("error")
    if path.startswith("/v1/vision"):
        return next((c for c in LOAD_CODES if isinstance(error, str) and c in error), None)
    return error.get("code") if isinstance(error, dict) else None


def test_no_server_errors_on_invalid_input(live_server):
    """Negative cases: bodies, parameters and media that break the schema get a typed 4xx, never a 5xx."""
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if op.method.upper() == "POST"]
    assert len(operations) >= 9
    seen: list[tuple[str, int]] = []

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call(headers=live_server.headers, timeout=60)
            seen.append((case.path, response.status_code))
            assert response.status_code < 500 or (
                response.status_code in (503, 504)
                and _error_code(case.path, response.json()) in LOAD_CODES), (
                case.method, case.formatted_path, response.status_code, response.text[:500])
            if response.status_code >= 400 and case.path == "/":  # the Rekognition API: AWS's error shape
                body = response.json()
                assert isinstance(body.get("__type"), str) and isinstance(body.get("message"), str), (
                    response.text[:500])
            elif response.status_code >= 400 and case.path.startswith("/v1/vision"):  # DeepStack's error shape
                body = response.json()
                assert body.get("success") is False and isinstance(body.get("error"), str), response.text[:500]
            elif response.status_code >= 400:  # an error body, or per-image results that all failed
                body = response.json()
                errors = [r.get("error") for r in body["results"]] if "results" in body else [body.get("error")]
                assert errors and all(isinstance(e, dict) and isinstance(e.get("message"), str) for e in errors), (
                    response.text[:500])

        run()
    assert {p for p, _ in seen} == {op.path for op in operations}
    assert any(400 <= code < 500 for _, code in seen)
