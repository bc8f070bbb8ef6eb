"""Plain logic stays plain: the pure modules load without Dagster, alpaca-py or the AWS SDK.

Each is imported in a fresh interpreter (this process has long imported everything), so a
stray import anywhere in its chain fails here, naming the module that pulled it in. And the product
stands alone: no module of it imports the dev stack (`signal9_devstack`), which the image leaves out.
"""

import ast
import json
import subprocess
import sys

import pytest

PURE = [
    "signal9_pipeline.assets_sync.changes",
    "signal9_pipeline.assets_sync.validation",
    "signal9_pipeline.pollenation.batches",
    "signal9_pipeline.market_data.days",
    "signal9_pipeline.market_data.screening",
    "signal9_pipeline.market_data.timeframes",
    "signal9_pipeline.market_data.codec",
    "signal9_pipeline.corporate_actions.actions",
    "signal9_pipeline.credentials",
    "signal9_pipeline.identity",
    "signal9_pipeline.tables.assets",
    "signal9_pipeline.tables.market_data",
    "signal9_pipeline.logs",
    "signal9_pipeline.memory",
    "signal9_pipeline.retry",
    "signal9_pipeline.settings",
    "signal9_pipeline.timestamps",
]
FORBIDDEN = ("dagster", "alpaca", "boto3", "botocore")


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_framework_or_client(module):
    probe = (f"import sys, json; import {module}; "
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], module


DOMAIN = ("signal9_pipeline.assets_sync", "signal9_pipeline.pollenation", "signal9_pipeline.market_data",
          "signal9_pipeline.corporate_actions")


def test_the_resources_import_no_domain_module():
    """The I/O layer stays below the domain: reading Alpaca's pages into bars is market_data's, not the client's."""
    probe = ("import importlib, json, pkgutil, sys\n"
             "import signal9_pipeline.resources as resources\n"
             "for found in pkgutil.iter_modules(resources.__path__):\n"
             "    importlib.import_module(f'signal9_pipeline.resources.{found.name}')\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({DOMAIN!r}))))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []



DEV_STACK = "signal9_devstack"  # the sandbox and the local stack: never in the image (deploy/Dockerfile)
PRODUCTION_ENTRY_POINTS = ["signal9_pipeline.definitions", "signal9_pipeline.preflight"]


@pytest.mark.parametrize("module", PRODUCTION_ENTRY_POINTS)
def test_production_code_loads_without_the_sandbox_and_the_local_stack(module):
    probe = ("import importlib.abc, sys\n"
             "class Absent(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             f"        if name.split('.')[0] == {DEV_STACK!r}:\n"
             "            raise ModuleNotFoundError(name)\n"
             "sys.meta_path.insert(0, Absent())\n"
             f"import {module}\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def imported_modules(folder: str) -> list[tuple[str, str]]:
    """(where, module) for every absolute import statement under folder, lazy ones inside functions included."""
    from signal9_pipeline_tests.conftest import PROJECT_ROOT

    found = []
    for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            found += [(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}", name) for name in names]
    return found


def test_the_product_package_imports_nothing_from_the_dev_stack():
    assert [(where, m) for where, m in imported_modules("signal9_pipeline") if m.split(".")[0] == DEV_STACK] == []


def test_benchmarks_import_no_test_module():
    """Benchmarks share helpers through signal9_pipeline_tests.support (or modules of their own), never a test file."""
    is_test = [(where, m) for where, m in imported_modules("benchmarks")
               if any(part.startswith(("test_", "conftest")) for part in m.split("."))]
    assert is_test == []
