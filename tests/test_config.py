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
