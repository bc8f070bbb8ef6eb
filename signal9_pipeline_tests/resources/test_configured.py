"""Resource configuration: every setting field is a registered setting, an EnvVar in the code location, read when a run
starts; scripts build the same resources from their environment."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from dagster._config.field_utils import IntEnvVar

from signal9_pipeline import settings
from signal9_pipeline.resources.alerts import AlertsResource
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.configured import FromSettings
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.events import EventsResource
from signal9_pipeline.resources.metrics import MetricsResource

RESOURCES = (AlpacaResource, AlertsResource, DynamoDBResource, EventsResource, MetricsResource)
# Fields that are not settings: tuning of the access layer, and dagster_aws' boto3 fields, whose unset value is
# boto3's own configuration chain (AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_<SERVICE>, the ECS task role).
NOT_SETTINGS = {"credentials_ttl_s", "circuit_failure_threshold", "circuit_reset_s", "region_name", "max_attempts",
                "profile_name", "use_ssl", "endpoint_url", "verify", "aws_access_key_id", "aws_secret_access_key",
                "aws_session_token"}


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.__name__)
def test_a_resource_field_is_a_registered_setting_with_the_registered_default(resource: type[FromSettings]):
    fields = resource.model_fields
    for field, name in resource.SETTINGS.items():
        assert name in settings.BY_NAME, f"{resource.__name__}.{field}: {name} is not registered"
        registered = settings.default(name)
        assert fields[field].default == ("" if registered is None else registered), (resource.__name__, field)
        assert fields[field].annotation is settings.BY_NAME[name].kind, (resource.__name__, field)
    unaccounted = set(fields) - set(resource.SETTINGS) - NOT_SETTINGS
    assert unaccounted == set(), f"{resource.__name__}: fields neither a setting nor listed as tuning: {unaccounted}"
    if resource is AlpacaResource:  # its max_attempts is a setting; DynamoDB's is botocore's retries
        assert resource.SETTINGS["max_attempts"] == "ALPACA_MAX_ATTEMPTS"


def test_the_code_location_sets_every_setting_field_with_an_env_var():
    from signal9_pipeline.definitions import defs

    resources = defs.resources
    assert {type(r) for r in resources.values() if isinstance(r, FromSettings)} == set(RESOURCES)
    for key, resource in resources.items():
        if not isinstance(resource, FromSettings):
            continue
        for field, name in type(resource).SETTINGS.items():
            value = getattr(resource, field)
            if settings.BY_NAME[name].kind is bool:  # Dagster has no boolean EnvVar: read when the location loads
                assert value is settings.get(name), (key, field)
            elif settings.BY_NAME[name].kind is int:
                assert isinstance(value, IntEnvVar) and value.name == name, (key, field)
            else:
                assert isinstance(value, dg.EnvVar) and value.env_var_name == name, (key, field)


def test_a_run_reads_the_variables_when_it_starts_and_an_unset_one_is_its_default(monkeypatch):
    for name in ("ALPACA_FEED", "ALPACA_MAX_ATTEMPTS", "SIGNAL9_MARKET_DATA_TABLE", "ALPACA_TRADING_URL"):
        monkeypatch.setenv(name, "placeholder")  # restored (or removed) after the test, whatever env_vars exports
        monkeypatch.delenv(name)
    alpaca, dynamodb = AlpacaResource.env_vars(), DynamoDBResource.env_vars()
    assert os.environ["ALPACA_MAX_ATTEMPTS"] == "5" and os.environ["ALPACA_TRADING_URL"] == ""
    monkeypatch.setenv("ALPACA_FEED", "delayed_sip")  # set after the resources were built: read at run start
    monkeypatch.setenv("SIGNAL9_MARKET_DATA_TABLE", "bars-of-this-run")
    seen = {}

    @dg.asset
    def probe(alpaca: AlpacaResource, dynamodb: DynamoDBResource) -> None:
        seen.update(feed=alpaca.data_feed(), attempts=alpaca.max_attempts, trading_url=alpaca.trading_url,
                    table=dynamodb.market_data_table_name(), assets=dynamodb.assets_table_name())

    assert dg.materialize([probe], resources={"alpaca": alpaca, "dynamodb": dynamodb}).success
    assert seen == {"feed": "delayed_sip", "attempts": 5, "trading_url": "",
                    "table": "bars-of-this-run", "assets": settings.get("SIGNAL9_ASSETS_TABLE")}


def test_a_variable_that_does_not_parse_fails_the_run_naming_it(monkeypatch):
    alpaca = AlpacaResource.env_vars()
    monkeypatch.setenv("ALPACA_MAX_ATTEMPTS", "five")

    @dg.asset
    def probe(alpaca: AlpacaResource) -> None:
        pass

    with pytest.raises(Exception, match="ALPACA_MAX_ATTEMPTS"):
        dg.materialize([probe], resources={"alpaca": alpaca})


def test_from_settings_reads_the_given_environment_and_takes_overrides():
    environ = {"SIGNAL9_EVENT_BUS": "bus-a", "ALPACA_PAPER": "false", "ALPACA_RATE_LIMIT_PER_MINUTE": "10000"}
    assert EventsResource.from_settings(environ).event_bus == "bus-a"
    alpaca = AlpacaResource.from_settings(environ, feed="sip")
    assert (alpaca.paper, alpaca.rate_limit_per_minute, alpaca.feed, alpaca.trading_url) == (False, 10_000, "sip", "")
    assert DynamoDBResource.from_settings({}).assets_table == settings.default("SIGNAL9_ASSETS_TABLE")
    with pytest.raises(settings.SettingError, match="ALPACA_PAPER='maybe' must be true or false"):
        AlpacaResource.from_settings({"ALPACA_PAPER": "maybe"})


def test_exported_defaults_read_back_as_the_defaults():
    environ: dict[str, str] = {"SIGNAL9_BARS_WORKERS": ""}
    names = [s.name for s in settings.REGISTRY]
    settings.export_defaults(names, environ)
    assert set(environ) == set(names)
    for name in names:
        assert settings.get(name, environ) == settings.default(name), name
