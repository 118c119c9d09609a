"""Key extraction, the per-key rate limiter, and ServeSettings validation."""

from __future__ import annotations

import pytest

from visor.errors import ConfigError
from visor.serve.auth import RateLimited, RateLimiter, key_from_request
from visor.serve.settings import ServeSettings, is_loopback


def test_key_from_request_forms():
    assert key_from_request({"authorization": "Bearer abc"}, {}) == "abc"
    assert key_from_request({"authorization": "bearer  abc "}, {}) == "abc"
    assert key_from_request({"x-api-key": "k1"}, {}) == "k1"
    assert key_from_request({"authorization": "Basic xyz"}, {}) is None
    assert key_from_request({"x-goog-api-key": "g"}, {"key": "q"}) is None
    assert key_from_request({"x-goog-api-key": "g"}, {"key": "q"}, google=True) == "g"
    assert key_from_request({}, {"key": "q"}, google=True) == "q"
    assert key_from_request({}, {}, google=True) is None


def test_token_bucket_rate_and_burst():
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited) as e:
        limiter.take("a")
    assert e.value.http_status == 429 and e.value.retry_after == 1
    limiter.take("b")  # other keys have their own bucket
    now[0] += 0.5  # one token back at 2/s
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")
    now[0] += 10  # refills to the burst, not beyond
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")


def test_settings_validation_and_round_trip():
    s = ServeSettings(review_threshold=0.4, review_thresholds={"m": 0.9}, review_labels=["x"])
    assert s.review_enabled and s.review_labels == ("x",)
    assert ServeSettings.from_dict(__import__("json").loads(s.to_json())) == s
    assert not ServeSettings().review_enabled
    for bad in ({"max_batch": 0}, {"review_threshold": 1.5}, {"rate_limit": 0}, {"preload": ["classifer"]},
                {"review_thresholds": {"m": -1}}, {"deadline_ms": -1}):
        with pytest.raises(ConfigError):
            ServeSettings(**bad)
    with pytest.raises(ConfigError, match="max_batch"):
        ServeSettings.from_dict({"max_bach": 3})


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)])
def test_loopback(host, loop):
    assert is_loopback(host) is loop
