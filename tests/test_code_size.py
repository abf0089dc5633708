"""House rule: no class over ~300 lines, no function over ~80 (DEVELOPERS.md, "Conventions").

Why a test: a long class or function grows by one more branch at a time and nobody notices;
this fails the suite the day one crosses the line, naming it. Size is the body only: from the
first statement after the docstring to the last line, so a Numba kernel's long argument list
(signature lines) and a docstring that explains WHY do not count against it.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("trails", "geofence", "api")
MAX_CLASS = 300
MAX_FUNCTION = 80

# Offenders not yet split, with their size when this list was written: each may shrink, none
# may grow past its number (and a new offender is not allowed). Empty when all are fixed.
ALLOWED: dict[str, int] = {
    # The layout kernel: one compiled function on purpose (one Numba cache entry to load), the
    # hottest kernel of the stream pass; splitting it needs its own timing.
    "geofence/layout.py::_layout": 111,
}


def _body_lines(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the node's last line."""
    body = node.body
    if (len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def _walk(tree: ast.AST, prefix: str) -> Iterator[tuple[str, str, int]]:
    """(qualified name, kind, body lines) for every class and function, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ClassDef):
            name = f"{prefix}{node.name}"
            yield name, "class", _body_lines(node)
            yield from _walk(node, name + ".")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, "function", _body_lines(node)
            yield from _walk(node, name + ".")
        else:
            yield from _walk(node, prefix)


def sizes() -> dict[str, tuple[str, int]]:
    """Every class and function in the packages: 'path::qualname' -> (kind, body lines)."""
    out: dict[str, tuple[str, int]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            for name, kind, n in _walk(tree, ""):
                out[f"{rel}::{name}"] = (kind, n)
    return out


def offenders() -> dict[str, tuple[str, int]]:
    limit = {"class": MAX_CLASS, "function": MAX_FUNCTION}
    return {k: (kind, n) for k, (kind, n) in sizes().items() if n > limit[kind]}


def test_body_lines_skips_docstring_and_signature() -> None:
    src = 'def f(\n    a,\n    b,\n):\n    """Doc.\n\n    More.\n    """\n    x = 1\n    return x\n'
    node = ast.parse(src).body[0]
    assert _body_lines(node) == 2


def test_no_class_or_function_over_the_limit() -> None:
    found = offenders()
    grown = {k: v for k, v in found.items() if k not in ALLOWED or v[1] > ALLOWED[k]}
    lines = [f"{k}: {kind} of {n} lines (limit {MAX_CLASS if kind == 'class' else MAX_FUNCTION}"
             + (f", allowed {ALLOWED[k]})" if k in ALLOWED else ")")
             for k, (kind, n) in sorted(grown.items(), key=lambda kv: -kv[1][1])]
    assert not grown, "split these (tests/test_code_size.py):\n" + "\n".join(lines)


def test_allow_list_names_only_real_offenders() -> None:
    """A fixed offender leaves the list, so the list never hides room to grow back."""
    found = offenders()
    stale = sorted(k for k in ALLOWED if k not in found)
    assert not stale, f"no longer over the limit, remove from ALLOWED: {stale}"
