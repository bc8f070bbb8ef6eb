"""The settings registry is the one list of settings: README, the deploy files and the code are held to it."""

from __future__ import annotations

import ast
import re
from datetime import date

import pytest
import yaml

from signal9_pipeline import settings
from signal9_pipeline.preflight import forwarded_env_vars, problems, referenced_env_vars
from signal9_pipeline_tests.conftest import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
DEPLOY = PROJECT_ROOT / "deploy"


def test_readme_configuration_tables_are_the_registry():
    for scopes in (("run", "local", "external"), ("deploy",)):
        table = settings.markdown(*scopes)
        assert table in README, (f"README's table of {scopes} settings differs"
                                 " from `python -m signal9_pipeline.settings`")
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    assert documented == {s.name for s in settings.REGISTRY}


def test_the_run_launcher_forwards_exactly_the_registry_forwarded_settings():
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    listed = forwarded_env_vars(instance)
    assert (len(listed) == len(set(listed))
            and set(listed) == set(settings.forwarded())), sorted(set(listed) ^ set(settings.forwarded()))
    secrets = {s["name"] for s in instance["run_launcher"]["config"]["secrets"]}
    assert secrets == {"DAGSTER_PG_PASSWORD"} and "DAGSTER_PG_PASSWORD" not in settings.forwarded()


def test_every_variable_the_deploy_files_read_is_registered_as_deploy_or_run():
    read = set()
    for name in ("dagster.yaml", "workspace.yaml"):
        read |= set(referenced_env_vars(yaml.safe_load((DEPLOY / name).read_text())))
    assert read and all(settings.BY_NAME[n].scope in ("deploy", "run") for n in read), sorted(read)


def test_the_code_reads_settings_only_through_the_registry():
    """No module but settings.py reads a variable by name (os.environ.get / os.getenv / os.environ[...])."""
    offenders = []
    sources = [path for package in ("signal9_pipeline", "signal9_devstack")
               for path in (PROJECT_ROOT / package).rglob("*.py")]
    for path in sources:
        if path.name == "settings.py" and path.parent.name == "signal9_pipeline":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            target = None
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv") and node.args:
                target = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                target = node.slice
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {target.value}")
    assert offenders == []


def test_a_setting_is_typed_and_defaulted_and_an_unregistered_one_is_refused(monkeypatch):
    monkeypatch.delenv("SIGNAL9_BARS_WORKERS", raising=False)
    assert settings.get("SIGNAL9_BARS_WORKERS") == 4
    monkeypatch.setenv("SIGNAL9_BARS_WORKERS", "8")
    monkeypatch.setenv("SIGNAL9_BARS_START_DATE", "2025-01-02")
    monkeypatch.setenv("ALPACA_PAPER", "off")
    assert settings.get("SIGNAL9_BARS_WORKERS") == 8 and settings.get("ALPACA_PAPER") is False
    assert settings.get("SIGNAL9_BARS_START_DATE") == date(2025, 1, 2)
    with pytest.raises(KeyError, match="SIGNAL9_NO_SUCH.*REGISTRY"):
        settings.get("SIGNAL9_NO_SUCH")
    monkeypatch.setenv("SIGNAL9_BARS_WORKERS", "four")
    with pytest.raises(settings.SettingError, match="SIGNAL9_BARS_WORKERS='four' must be an integer"):
        settings.get("SIGNAL9_BARS_WORKERS")


def test_preflight_names_every_setting_that_does_not_parse():
    environ = {"ALPACA_MAX_ATTEMPTS": "5x", "ALPACA_PAPER": "maybe", "SIGNAL9_ALARM_OVERRIDES": "[1]",
               "SIGNAL9_BARS_START_DATE": "2024-13-01", "SIGNAL9_BARS_WORKERS": "4",
               "DAGSTER_HOME": str(PROJECT_ROOT / "nowhere")}
    found = problems(["true"], environ)
    assert found == ["environment variable ALPACA_PAPER='maybe' must be true or false",
                     "environment variable ALPACA_MAX_ATTEMPTS='5x' must be an integer",
                     "environment variable SIGNAL9_ALARM_OVERRIDES='[1]' must be a JSON object",
                     "environment variable SIGNAL9_BARS_START_DATE='2024-13-01' must be a date YYYY-MM-DD"]
