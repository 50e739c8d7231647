"""The catalogue and the gateway's keys as configured (CASE_CATALOGUE, CASE_GATEWAY_KEYS),
and `casectl services` / `casectl open` with the catalogue. No servers: everything here is
refused or answered before any connection."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from casectl.cases import register
from casectl.services import services
from domain.model import Source
from infra.catalogue import BUILT_IN, load_catalogue
from infra.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def no_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CASELOOP_DATA", str(tmp_path / "no-stack"))
    monkeypatch.delenv("CASE_CATALOGUE", raising=False)


def test_casectl_services_lists_every_code_and_the_json_is_the_file() -> None:
    table = CliRunner().invoke(services, [], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "services-2026.1" in table.output
    for service in load_catalogue().services:
        assert service.code in table.output and service.name_zh in table.output
    assert "department 1 working day" in table.output  # water_supply's own limit
    as_json = CliRunner().invoke(services, ["--json"])
    assert json.loads(as_json.output) == load_catalogue().model_dump(mode="json")
    assert [s["code"] for s in json.loads(as_json.output)["services"]] == [
        s["code"] for s in json.loads(BUILT_IN.read_text(encoding="utf-8"))["services"]
    ]


def test_casectl_open_refuses_a_category_that_is_no_code() -> None:
    group = click.Group()
    register(group)
    flags = {
        "--source": "visit",
        "--title": "井盖缺失",
        "--description": "小区北门外井盖缺失",
        "--category": "manholes",
        "--grid": "G-0101",
        "--community": "C-01",
        "--street": "S-01",
        "--district": "D-01",
        "--reporter-name": "刘先生",
    }
    result = CliRunner().invoke(group, ["open", *(x for pair in flags.items() for x in pair)])
    assert result.exit_code == 2
    assert "category: not a service code of catalogue services-2026.1" in result.stderr
    assert "casectl services" in result.stderr


def test_a_catalogue_of_ones_own(tmp_path: Path) -> None:
    own = tmp_path / "services.json"
    own.write_text(
        json.dumps(
            {
                "version": "city-1",
                "services": [
                    {
                        "code": "potholes",
                        "name_zh": "道路坑洼",
                        "name_en": "Potholes",
                        "severity": "minor",
                        "handling_class": "immediate",
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    catalogue = Settings.from_env({"CASE_CATALOGUE": str(own)}).catalogue()
    assert catalogue.version == "city-1" and catalogue.codes == ["potholes"]
    own.write_text('{"version": "city-2", "services": [{"code": "x"}]}', encoding="utf-8")
    load_catalogue.cache_clear()
    with pytest.raises(SettingsError, match=r"^CASE_CATALOGUE: catalogue .*services\.0\.name_zh"):
        Settings.from_env({"CASE_CATALOGUE": str(own)}).catalogue()
    with pytest.raises(SettingsError, match=r"CASE_CATALOGUE: .*no such file"):
        Settings.from_env({"CASE_CATALOGUE": str(tmp_path / "none.json")})


def test_gateway_keys_one_per_calling_system() -> None:
    keys = Settings.from_env(
        {"CASE_GATEWAY_KEYS": "hotline_12345=" + "a" * 24 + ", mini_program=" + "b" * 30}
    ).gateway_keys
    assert keys == ((Source.HOTLINE_12345, "a" * 24), (Source.MINI_PROGRAM, "b" * 30))
    assert Settings.from_env({}).gateway_keys == ()
    for bad, named in [
        ("fax=" + "a" * 24, "each entry must be source=key"),
        ("hotline_12345", "each entry must be source=key"),
        ("visit=short", "the key of visit must be 24 or more"),
        ("visit=" + "a" * 23 + "\u00e9", "the key of visit must be 24 or more"),
        ("visit=" + "a" * 24 + ",visit=" + "b" * 24, "each source and each key may be named once"),
        ("visit=" + "a" * 24 + ",patrol=" + "a" * 24, "each source and each key may be named once"),
    ]:
        with pytest.raises(SettingsError) as refused:
            Settings.from_env({"CASE_GATEWAY_KEYS": bad})
        assert str(refused.value).startswith("CASE_GATEWAY_KEYS: " + named), refused.value
        assert "a" * 20 not in str(refused.value)  # a key is never echoed
