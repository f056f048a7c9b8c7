"""Fixtures of the adapter suite: `driver` runs a test once per deployment (see drivers.py)."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.serve_fixture import running_serve
from tavus_callbacks.app import App

from .drivers import (
    ALL_DRIVERS,
    FUNCTIONS,
    LIMIT,
    AwsDriver,
    AzureDriver,
    Driver,
    FunctionsFrameworkProcess,
    GcpDriver,
    HttpDriver,
    driver_env,
    load_module,
)


@contextlib.contextmanager
def core_logger_kept() -> Iterator[logging.Logger]:
    """The core's logger as it is now, put back afterwards (the Lambda adapter hands it to Powertools)."""
    core = logging.getLogger("tavus_callbacks")
    handlers, propagate, level = list(core.handlers), core.propagate, core.level
    try:
        yield core
    finally:
        core.handlers[:] = handlers
        core.propagate, core.level = propagate, level


ENTRY_APPS: list[App] = []  # the App each entry point built, read again by every test's fresh environment


@pytest.fixture(scope="session")
def aws_app() -> ModuleType:
    """functions/aws/app.py imported as the Lambda runtime would: its `handler` and the App it was built of. Its
    import gives the core's logger to Powertools; that is undone here so the rest of the test session logs as
    before."""
    with core_logger_kept():
        entry = load_module("tavus_aws_app", FUNCTIONS / "aws" / "app.py")
    assert isinstance(entry.callbacks, App) and callable(entry.handler)
    ENTRY_APPS.append(entry.callbacks)
    return entry


@pytest.fixture(scope="session")
def gcp_app() -> Any:
    """The Flask app functions-framework makes of functions/gcp/main.py. Its import gives the core's logger a
    Cloud Logging handler; that is undone here, as for the Lambda adapter."""
    import functions_framework

    with core_logger_kept():
        app = functions_framework.create_app(target="tavus_callback", source=str(FUNCTIONS / "gcp" / "main.py"))
    ENTRY_APPS.append(sys.modules["main"].callbacks)  # functions-framework imports the source as `main`
    return app


@pytest.fixture(scope="session")
def gcp_derive_app(gcp_app: Any) -> Any:
    """The Flask app functions-framework makes of the CloudEvent function tavus_derive of functions/gcp/main.py."""
    import functions_framework

    with core_logger_kept():
        app = functions_framework.create_app(target="tavus_derive", source=str(FUNCTIONS / "gcp" / "main.py"))
    ENTRY_APPS.append(sys.modules["main"].callbacks)
    return app


@pytest.fixture(scope="session")
def azure_app() -> ModuleType:
    """The Azure adapter, through functions/azure/function_app.py imported once as the Functions worker would."""
    entry = load_module("tavus_azure_function_app", FUNCTIONS / "azure" / "function_app.py")
    assert isinstance(entry.callbacks, App)
    ENTRY_APPS.append(entry.callbacks)
    return entry


@pytest.fixture(scope="session")
def azure_functions(azure_app: ModuleType) -> list[Any]:
    """What the FunctionApp registers, as the worker indexes it (once: indexing twice is refused)."""
    functions: list[Any] = azure_app.app.get_functions()
    return functions


@pytest.fixture(scope="session")
def azure_function(azure_functions: list[Any]) -> Callable[..., Any]:
    """The user function behind the one HTTP function the FunctionApp registers."""
    assert sorted(f.get_function_name() for f in azure_functions) == ["tavus_callback", "tavus_derive",
                                                                      "tavus_reconcile"]
    http = next(f for f in azure_functions if f.get_function_name() == "tavus_callback")
    return http.get_user_function()  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def azure_derive(azure_functions: list[Any]) -> Callable[..., Any]:
    """The user function behind the Event Grid function tavus_derive."""
    function = next(f for f in azure_functions if f.get_function_name() == "tavus_derive")
    return function.get_user_function()  # type: ignore[no-any-return]


@pytest.fixture
def adapter_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A fresh store folder and the TAVUS_* environment pointing at it; every entry point's App reads it again."""
    import os

    for name in list(os.environ):
        if name.startswith("TAVUS_"):
            monkeypatch.delenv(name)
    store_dir = tmp_path / "store"
    for name, value in driver_env(store_dir).items():
        monkeypatch.setenv(name, value)
    reload_apps()
    yield store_dir
    reload_apps()


def reload_apps() -> None:
    """Have every entry point's App read the environment again (after a test changed it)."""
    for app in ENTRY_APPS:
        app.reload()


@pytest.fixture
def captured_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Everything the in-process adapters log during the test: stdout, the core's and Azure's loggers,
    and Powertools' handler (bound to the stdout of import time, so pointed at a buffer here)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    loggers = [logging.getLogger(), logging.getLogger("tavus_callbacks"), logging.getLogger("tavus_callbacks.azure")]
    for logger in loggers:
        logger.addHandler(handler)
    aws = sys.modules.get("tavus_callbacks.platforms.aws")
    previous = aws.logger.registered_handler.setStream(buffer) if aws else None
    seen: list[str] = []

    def read() -> str:
        captured = capsys.readouterr()
        seen.append(captured.out + captured.err)
        return buffer.getvalue() + "".join(seen)

    yield read
    if aws and previous is not None:
        aws.logger.registered_handler.setStream(previous)
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture(scope="session")
def serve_driver() -> Iterator[HttpDriver]:
    """`tavus-callbacks serve` for the whole session (tests keep to their own events in its store)."""
    with running_serve(env={"TAVUS_MAX_BODY_BYTES": str(LIMIT)}) as proc:
        assert proc.store_dir is not None
        yield HttpDriver("serve", proc.store_dir, base_url=proc.url.rstrip("/"),
                         logs=(proc.log_dir / "stdout.txt", proc.log_dir / "stderr.txt"))


@pytest.fixture(scope="session")
def gcp_process_driver() -> Iterator[HttpDriver]:
    """Real `functions-framework` processes serving functions/gcp/main.py for the whole session: the callback
    function, and tavus_derive (as Cloud Functions deploys them, two functions from one source)."""
    store_dir = Path(tempfile.mkdtemp(prefix="tavus-ff-store-")) / "store"
    process = FunctionsFrameworkProcess(driver_env(store_dir), store_dir)
    deriving = None
    try:
        deriving = FunctionsFrameworkProcess(driver_env(store_dir), store_dir, target="tavus_derive")
        yield HttpDriver("gcp-process", store_dir, base_url=process.url, logs=(process.log, deriving.log),
                         derive_url=deriving.url)
    finally:
        process.close()
        if deriving is not None:
            deriving.close()
        shutil.rmtree(store_dir.parent, ignore_errors=True)


@pytest.fixture(params=ALL_DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    """Each deployment in turn: the four AWS event shapes, GCP (test client and process), Azure, serve."""
    name: str = request.param
    if name == "serve":
        return request.getfixturevalue("serve_driver")  # type: ignore[no-any-return]
    if name == "gcp-process":
        return request.getfixturevalue("gcp_process_driver")  # type: ignore[no-any-return]
    store_dir: Path = request.getfixturevalue("adapter_env")
    if name.startswith("aws-"):
        kind, _, encoding = name.removeprefix("aws-").partition("-")
        return AwsDriver(name, store_dir, kind=kind, b64=encoding == "b64",
                         module=request.getfixturevalue("aws_app"))
    if name == "gcp":
        return GcpDriver(name, store_dir, client=request.getfixturevalue("gcp_app").test_client(),
                         derive_client=request.getfixturevalue("gcp_derive_app").test_client())
    return AzureDriver(name, store_dir, function=request.getfixturevalue("azure_function"),
                       derive_function=request.getfixturevalue("azure_derive"))
