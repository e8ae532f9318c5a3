"""The product uses its libraries through their public API: a scan of cruddur/'s source.

- No library private attribute is read (``obj._name`` where nothing in cruddur/ defines ``_name``),
  except the few listed in ``cruddur.telemetry.core.internals.PRIVATE_READS``.
- No class derived from a library class defines a ``_method`` (that would override or shadow a
  library's private method), and none subclasses the SDK's ``TracerProvider``.
- No function is rebuilt or rebound (``types.FunctionType``, ``__globals__``, ``__closure__``,
  assigning to another module's attribute), and no Flask hook list is edited in place.
- No sampling decision is "sampled but not recording".
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from cruddur.telemetry.core.internals import INTERNALS as PRIVATE_READS

PRODUCT = Path(__file__).resolve().parents[1] / "cruddur"
HOOK_LISTS = {
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "url_value_preprocessors",
    "url_default_functions",
}
REBINDING = {"FunctionType", "__globals__", "__closure__", "__code__"}
# Underscored by the naming convention of a namedtuple or a proxy, and public by their documentation:
# Flask documents `current_app._get_current_object()` for handing the app to a signal or thread.
DOCUMENTED = {"_get_current_object", "_asdict", "_replace", "_fields"}


def _trees() -> list[tuple[Path, ast.AST]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(PRODUCT.rglob("*.py"))]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(trees) -> set[str]:
    """Every private name cruddur/ itself defines: attributes it assigns, functions, classes, globals."""
    names: set[str] = set()
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.split(".")[-1])
    return {name for name in names if _private(name)}


def _own_classes(trees) -> set[str]:
    return {node.name for _, tree in trees for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def _base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Attribute):
        return base.attr
    if isinstance(base, ast.Name):
        return base.id
    return ""


@pytest.fixture(scope="module")
def trees():
    return _trees()


def test_private_reads_are_only_the_listed_ones(trees):
    own = _own_names(trees)
    allowed = {entry.rpartition(".")[2] for entry in PRIVATE_READS}
    found = []
    for path, tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in own or node.attr in allowed or node.attr in DOCUMENTED:
                continue
            found.append(f"{path.relative_to(PRODUCT.parent)}:{node.lineno} .{node.attr}")
    assert found == []
    assert len(PRIVATE_READS) <= 3


def test_no_library_private_method_is_overridden_and_no_provider_subclass(trees):
    """A private method of ours on a class derived from a library class is fine unless a library class
    in its MRO has that name too: that would override (or shadow) the library's private method."""
    found = []
    for path, tree in trees:
        classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
        for node in classes:
            if "TracerProvider" in [_base_name(base) for base in node.bases]:
                found.append(f"{path.name}:{node.lineno} {node.name} subclasses TracerProvider")
        private = {n.name: [i.name for i in n.body if isinstance(i, ast.FunctionDef | ast.AsyncFunctionDef)
                            and _private(i.name)] for n in classes if n.bases}  # fmt: skip
        if not any(private.values()):
            continue
        module = importlib.import_module(".".join(path.relative_to(PRODUCT.parent).with_suffix("").parts))
        for name, methods in private.items():
            cls = getattr(module, name, None)
            if not isinstance(cls, type):
                continue
            found += [f"{path.name} {name}.{method} overrides {base}" for method, base in _overrides(cls, methods)]
    assert found == []


def _overrides(cls: type, methods: list[str]) -> list[tuple[str, str]]:
    """(method, library class) for each of `methods` that a non-cruddur class in cls's MRO defines."""
    library = [k for k in cls.__mro__[1:] if not k.__module__.startswith("cruddur") and k is not object]
    return [(method, k.__qualname__) for method in methods for k in library if method in vars(k)]


def test_the_override_check_catches_one():
    """The check above, on a class that does override a library private method."""
    import logging

    class Handler(logging.Handler):
        def _at_fork_reinit(self):  # logging.Handler's own private method
            pass

    assert _overrides(Handler, ["_at_fork_reinit", "_ours"]) == [("_at_fork_reinit", "Handler")]


def test_nothing_is_rebound_and_no_flask_hook_list_is_edited(trees):
    found = []
    for path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and (node.attr in REBINDING or node.attr in HOOK_LISTS):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    # `module.attr = ...` on an imported module (not self/cls/an object we made here).
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id in _imported_modules(tree)
                    ):
                        found.append(f"{path.name}:{node.lineno} assigns {target.value.id}.{target.attr}")
    assert found == []


def test_no_sampled_but_not_recording_decision(trees):
    """The SDK specification: a span that is sampled is recording (Decision has no other member)."""
    for path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                methods = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
                assert not {"is_sampled", "is_recording"} <= methods, f"{path.name}: {node.name}"


def _imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
    return names
