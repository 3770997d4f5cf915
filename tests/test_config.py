from typing import Literal

import pytest

from raysweep.config import ConfigError, Spec, apply_overrides, load, read_yaml


class Inner(Spec):
    alpha: float = 0.5
    kind: Literal["a", "b"] = "a"


class Outer(Spec):
    name: str
    inner: Inner = Inner()
    values: list[float] = [0.0, 1.0]


def test_overrides_parse_yaml_values_and_nested_keys():
    data = {"name": "x", "inner": {"alpha": 0.5}, "values": [1, 2]}
    out = apply_overrides(data, ["inner.alpha=0.25", "values.1=7", "name=y", "new.deep=[1, 2]"])
    assert out == {"name": "y", "inner": {"alpha": 0.25}, "values": [1, 7], "new": {"deep": [1, 2]}}
    assert data["inner"]["alpha"] == 0.5  # input untouched


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides({}, ["alpha"])


def test_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ninner: {alpha: 0.5, alhpa: 1}\n")
    with pytest.raises(ConfigError) as err:
        load(Outer, path)
    assert str(err.value) == f"{path}: inner.alhpa: unknown key"


def test_wrong_type_names_field_and_value(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ninner: {alpha: lots}\n")
    with pytest.raises(ConfigError) as err:
        load(Outer, path)
    message = str(err.value)
    assert "inner.alpha" in message and "'lots'" in message and "\n" not in message


def test_missing_required_key_and_missing_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner: {}\n")
    with pytest.raises(ConfigError, match="name: required key missing"):
        load(Outer, path)
    with pytest.raises(ConfigError, match="config file not found"):
        read_yaml(tmp_path / "absent.yaml")


def test_non_mapping_and_invalid_yaml(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        read_yaml(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        read_yaml(tmp_path / "bad.yaml")
