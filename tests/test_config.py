from dataclasses import dataclass

import pytest

from visor.config import check_keys, from_mapping, suggest
from visor.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    learning_rate: float
    batch_size: int = 32


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rat' in Settings\. Did you mean 'learning_rate'"):
        from_mapping(Settings, {"learning_rat": 0.1})


def test_missing_and_valid():
    with pytest.raises(ConfigError, match="missing key"):
        from_mapping(Settings, {"batch_size": 4})
    assert from_mapping(Settings, {"learning_rate": 0.1}) == Settings(0.1, 32)
    with pytest.raises(ConfigError, match="must be an object"):
        from_mapping(Settings, [1, 2])


def test_suggest_and_check_keys():
    assert suggest("zzz", ["alpha"]) == ""
    check_keys(["a"], ["a", "b"], "x")
    with pytest.raises(ConfigError):
        check_keys(["c"], ["a", "b"], "x")


def test_parse_json_bounds_depth_and_types_errors():
    from visor.config import MAX_JSON_DEPTH, json_depth, parse_json

    assert parse_json('{"a": [1, {"b": 2}]}', "x") == {"a": [1, {"b": 2}]}
    assert json_depth(1) == 0 and json_depth([]) == 1 and json_depth({"a": [1, {"b": [2]}]}) == 4
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json_depth(parse_json(ok, "x")) == MAX_JSON_DEPTH
    with pytest.raises(ConfigError, match="settings nests arrays or objects more than 64 deep"):
        parse_json("[" + ok + "]", "settings")
    with pytest.raises(ConfigError, match="more than 64 deep"):
        parse_json("[" * 100_000 + "]" * 100_000, "settings")  # json.loads alone: RecursionError
    with pytest.raises(ConfigError, match="more than 3 deep"):
        parse_json('{"a": {"b": {"c": {}}}}', "x", max_depth=3)
    with pytest.raises(ConfigError, match="x is not valid JSON"):
        parse_json("{nope", "x")
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_json(b"\xff\xfe\x00", "x")
