"""The product package reads in short functions: none is longer than 40 lines (its `def` line to its last line).

`python -m pytest -q -s signal9_pipeline_tests/test_code_shape.py` prints the five longest.
"""

import ast
from pathlib import Path

import signal9_pipeline

MAX_LINES = 40


def function_lengths(package: Path) -> list[tuple[int, str]]:
    """(lines, "path:line name") of every function and method under `package`, longest first."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(package.parent)}:{node.lineno} {node.name}"
                found.append((node.end_lineno - node.lineno + 1, where))
    return sorted(found, reverse=True)


def test_no_function_of_the_product_package_is_longer_than_40_lines():
    lengths = function_lengths(Path(signal9_pipeline.__file__).parent)
    print("\nlongest functions:", *(f"{n:3d} {where}" for n, where in lengths[:5]), sep="\n  ")
    assert len(lengths) > 100  # the walk found the package's functions
    assert [(n, where) for n, where in lengths if n > MAX_LINES] == []
