"""Resource fields that each hold one registered setting, and the two ways a resource gets them.

A resource class lists its setting fields once (`SETTINGS`: field -> variable in `settings.REGISTRY`); each
field's default is that setting's registered default, so a resource never reads the environment behind its
own fields. `definitions.py` builds every resource with `env_vars()` (each field a `dg.EnvVar` that Dagster
resolves when a run starts, and that the UI's resource page shows); scripts, notebooks and tests build one
from the environment they run in with `from_settings()`.
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar, Literal

import boto3
import dagster as dg
from botocore.config import Config
from dagster_aws.utils import ResourceWithBoto3Configuration

from signal9_pipeline import settings


class FromSettings:
    """Mixin for a `dg.ConfigurableResource` whose fields are registered settings."""

    SETTINGS: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_settings(cls, environ: dict[str, str] | None = None, **overrides: Any):
        """The resource as the environment configures it (unset variables: their registered defaults)."""
        values = {field: settings.get(name, environ) for field, name in cls.SETTINGS.items()}
        values = {field: value for field, value in values.items() if value is not None}
        return cls(**{**values, **overrides})

    @classmethod
    def env_vars(cls, **overrides: Any):
        """The resource with every setting field a `dg.EnvVar` of its variable, for `definitions.py`.

        Exports the registry's defaults for those variables first (`settings.export_defaults`), since an unset
        `EnvVar` fails the run. Dagster has no boolean `EnvVar` (pydantic refuses one for a `bool` field), so a
        boolean setting is read here, when the code location loads.
        """
        settings.export_defaults(cls.SETTINGS.values())
        values: dict[str, Any] = {}
        for field, name in cls.SETTINGS.items():
            kind = settings.BY_NAME[name].kind
            if kind is bool:
                values[field] = settings.get(name)
            elif kind is int:
                values[field] = dg.EnvVar.int(name)
            elif kind is str:
                values[field] = dg.EnvVar(name)
            else:  # pragma: no cover - dates and JSON objects are not resource fields
                raise TypeError(f"{name}: a {kind.__name__} setting cannot be a resource field")
        return cls(**{**values, **overrides})


AwsService = Literal["dynamodb", "events", "sns"]  # the services resources reach through `boto3_client`
_shared: dict[tuple, Any] = {}
_shared_lock = threading.Lock()
_BOTO3_FIELDS = ("region_name", "max_attempts", "profile_name", "use_ssl", "endpoint_url", "verify",
                 "aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_SESSION_FIELDS = ("profile_name", "region_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token")


def boto3_client(resource: ResourceWithBoto3Configuration, service: AwsService, *, shared: bool = False,
                 retry_mode: Literal["legacy", "standard", "adaptive"] = "standard", **config: Any) -> Any:
    """A boto3 client configured by dagster_aws' fields; fields left unset fall back to boto3's own chain
    (`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_<SERVICE>`, the task role), which is how ECS and the local stack
    configure AWS.

    `shared`: one client per configuration for the whole process, used by all its threads, for a resource that
    sends thousands of requests a run from several threads. botocore's clients are thread-safe; its sessions
    are not, and each session loads botocore's data files (about half a second, and some 10 MB of models held
    for the session's life), so a client per thread, each from a session of its own, cost a bars run with 8
    writer threads about 100 MB. The endpoint boto3 resolves from the environment is part of the key, since
    tests point one process at several local stacks, and so is the process id: a forked child builds its own.
    Otherwise a new client of boto3's default session when no session field is set (what its hooks, such as the
    tests' fault injection, see), or of a session built from those fields.
    """
    client_kwargs: dict[str, Any] = {
        "endpoint_url": resource.endpoint_url or None, "use_ssl": resource.use_ssl, "verify": resource.verify,
        "config": Config(retries={"max_attempts": resource.max_attempts, "mode": retry_mode}, **config)}
    session_kwargs = {f: getattr(resource, f) for f in _SESSION_FIELDS}
    if not shared:
        if any(v is not None for v in session_kwargs.values()):
            return boto3.session.Session(**session_kwargs).client(service, **client_kwargs)
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        return boto3.DEFAULT_SESSION.client(service, **client_kwargs)
    endpoint = (resource.endpoint_url or os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}")
                or settings.get("AWS_ENDPOINT_URL"))
    key = (os.getpid(), service, endpoint, retry_mode, tuple(getattr(resource, f) for f in _BOTO3_FIELDS),
           tuple(sorted(config.items())))
    client = _shared.get(key)
    if client is None:
        with _shared_lock:  # one session builds it, however many threads ask at once
            client = _shared.get(key)
            if client is None:
                client = _shared[key] = boto3.session.Session(**session_kwargs).client(service, **client_kwargs)
    return client
