import pytest
import yaml

from towerlab.errors import ConfigError
from towerlab.serve import settings

BASE = {
    "database": "sqlite:///f.db",
    "model": "runs/x",
    "sources": [
        {
            "name": "a",
            "table": "m",
            "key_column": "id",
            "payload": {"kind": "text", "column": "vals", "height": 2, "width": 2},
        }
    ],
}


def _load(tmp_path, data):
    p = tmp_path / "serve.yaml"
    p.write_text(yaml.safe_dump(data))
    return settings.load(p)


def test_valid_config_and_single_database_shorthand(tmp_path):
    s = _load(tmp_path, BASE)
    assert s.databases == {"default": "sqlite:///f.db"} and s.sources[0].interval_s == 5.0


@pytest.mark.parametrize(
    "name",
    [
        "m; DROP TABLE m",
        "m--",
        '"m"',
        "a.b.c",
        "x" * 64,
        "1abc",
        "m m",
        "inj_src\n",
        "m\r",
        " m",
        "m ",
        "m\t",
        "s.\nm",
        "m\x00",
        "m\u00a0",
        "\u0661m",
        "m.",
        ".m",
    ],
)
def test_sql_identifiers_are_validated(tmp_path, name):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["sources"][0]["table"] = name
    with pytest.raises(ConfigError, match=r"sources\.0\.table: .*not a plain SQL identifier"):
        _load(tmp_path, data)


def test_every_mistake_is_one_line(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["sources"][0].update(batch_size=0, key_column="id;", mode="claim", colour="red")
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, data)
    lines = str(e.value).splitlines()
    assert len(lines) == 3, lines  # (the claim-mode check runs once the fields themselves are valid)
    assert all(line.startswith(str(tmp_path / "serve.yaml")) for line in lines)
    text = str(e.value)
    assert "batch_size" in text and "key_column" in text and "colour: unknown field" in text


def test_claim_mode_needs_a_status_column(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["sources"][0]["mode"] = "claim"
    with pytest.raises(ConfigError, match="mode=claim needs status_column"):
        _load(tmp_path, data)


def test_columns_payload_needs_height_times_width_columns(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["sources"][0]["payload"] = {"kind": "columns", "columns": ["a", "b", "c"], "height": 2, "width": 2}
    with pytest.raises(ConfigError, match="needs height\\*width = 4 columns, got 3"):
        _load(tmp_path, data)


def test_credentials_come_from_the_environment(tmp_path, monkeypatch):
    data = {**BASE, "database": "postgresql+psycopg://u:${TL_SECRET}@127.0.0.1/db"}
    with pytest.raises(ConfigError, match="environment variable TL_SECRET is not set"):
        _load(tmp_path, data)
    monkeypatch.setenv("TL_SECRET", "s3cret")
    assert _load(tmp_path, data).databases["default"] == "postgresql+psycopg://u:s3cret@127.0.0.1/db"


def test_unknown_database_reference(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["sources"][0]["database"] = "plant2"
    with pytest.raises(ConfigError, match="database 'plant2' is not one of databases: default"):
        _load(tmp_path, data)
