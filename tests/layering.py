"""The import-layering check: each module of a package is imported in a fresh interpreter, and
every module of the package that the import loads must sit on the same layer or a lower one.

Layers are given bottom first, each a list of module-name prefixes; a module belongs to the
layer of its longest matching prefix. What it reports:

- an **upward import**: importing ``a`` loads ``b`` whose layer is above ``a``'s;
- a **cycle**: ``a`` loads ``b`` and ``b`` loads ``a`` (on the same layer as well);
- a module that no layer names.

Importing in a fresh interpreter (not reading the source) sees what really runs: imports inside
functions that run at import time, registries, ``__init__`` files; imports under
``TYPE_CHECKING`` and inside functions called later are not loaded, and are not counted.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

_PROBE = """
import importlib, json, sys
name = sys.argv[1]
before = set(sys.modules)
importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m not in before)))
"""


@dataclass(frozen=True)
class Violation:
    kind: str  # "upward", "cycle", "unplaced"
    module: str
    other: str = ""

    def __str__(self) -> str:
        if self.kind == "upward":
            return f"upward import: {self.module} loads {self.other}"
        if self.kind == "cycle":
            return f"cycle: {self.module} <-> {self.other}"
        return f"no layer names {self.module}"


def modules_of(package_dir: Path, package: str) -> list[str]:
    """Every module and subpackage of ``package`` (its folder is ``package_dir``)."""
    names = [package]
    for info in pkgutil.walk_packages([str(package_dir)], prefix=f"{package}."):
        names.append(info.name)
    return sorted(names)


def loaded_by(module: str, sys_path: Sequence[str]) -> set[str]:
    """The modules that importing ``module`` in a fresh interpreter loads (blocking)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys_path))
    out = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True,
                         text=True, env=env, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"importing {module} failed:\n{out.stderr[-2000:]}")
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def layer_of(module: str, layers: Sequence[Sequence[str]]) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for rank, prefixes in enumerate(layers):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), rank)
    return best[1] if best is not None else None


def check(package_dir: Path, package: str, layers: Sequence[Sequence[str]],
          sys_path: Sequence[str], workers: int = 2) -> list[Violation]:
    """All violations in ``package`` against ``layers`` (bottom first), sorted."""
    modules = modules_of(package_dir, package)
    with ThreadPoolExecutor(workers) as pool:
        loads = dict(zip(modules, pool.map(lambda m: loaded_by(m, sys_path), modules),
                         strict=True))
    found: set[Violation] = set()
    for module in modules:
        rank = layer_of(module, layers)
        if rank is None:
            if module != package:  # the package's own __init__ may sit anywhere
                found.add(Violation("unplaced", module))
            continue
        for other in loads[module]:
            if other == module or not other.startswith(package + ".") or other not in loads:
                continue
            other_rank = layer_of(other, layers)
            if other_rank is not None and other_rank > rank:
                found.add(Violation("upward", module, other))
            if module in loads[other] and module < other and not _is_package_of(module, other) \
                    and not _is_package_of(other, module):
                found.add(Violation("cycle", module, other))
    return sorted(found, key=lambda v: (v.kind, v.module, v.other))


def _is_package_of(parent: str, child: str) -> bool:
    """Importing ``a.b`` loads ``a`` first: a package and its own modules are no cycle."""
    return child.startswith(parent + ".")
