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

"Fresh" is a child forked for each module from a probe process that has loaded only the large
third-party libraries (``PRELOAD``: none of the package checked), so that each child pays for
the package's own modules alone: 166 modules of Loa in ~4 s, where an interpreter started for
each took ~16 s of the suite. Only the package's own modules are compared.
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

# Third-party libraries the probe loads before forking (those missing are passed over).
PRELOAD = ("numpy", "av", "aiohttp", "aiohttp.web", "aiomqtt", "uvloop")

# The probe: loads PRELOAD, then forks a child per module named on its command line; each child
# imports its module and writes what that loaded (JSON) or why it failed; prints {module:
# {"loaded": [...]} or {"error": "..."}} as one JSON line.
_PROBE = """
import importlib, json, os, signal, sys, traceback
for lib in sys.argv[1].split(","):
    try:
        importlib.import_module(lib)
    except ImportError:
        pass
found = {}
for name in sys.argv[2:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        signal.alarm(60)  # a module whose import hangs ends its child, not the check
        before = set(sys.modules)
        try:
            importlib.import_module(name)
            said = {"loaded": sorted(m for m in sys.modules if m not in before)}
        except BaseException:
            said = {"error": traceback.format_exc()[-2000:]}
        with os.fdopen(w, "w") as out:
            out.write(json.dumps(said))
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as got:
        text = got.read()
    os.waitpid(pid, 0)
    found[name] = json.loads(text) if text else {"error": "the import ended its process"}
print(json.dumps(found))
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


def loaded_by(modules: Sequence[str], sys_path: Sequence[str]) -> dict[str, set[str]]:
    """For each of ``modules``, the modules that importing it afresh loads (see the module
    docstring; blocking). Raises RuntimeError naming a module whose import failed."""
    # one BLAS thread: the probe forks, and a child must not inherit a thread pool's locks
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys_path), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _PROBE, ",".join(PRELOAD), *modules],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the import probe failed:\n{out.stderr[-2000:]}")
    found = json.loads(out.stdout.strip().splitlines()[-1])
    for module, said in found.items():
        if "error" in said:
            raise RuntimeError(f"importing {module} failed:\n{said['error']}")
    return {module: set(said["loaded"]) for module, said in found.items()}


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
    loads: dict[str, set[str]] = {}
    with ThreadPoolExecutor(workers) as pool:  # a probe a worker, the modules dealt out
        for part in pool.map(lambda share: loaded_by(share, sys_path),
                             [modules[i::workers] for i in range(workers)]):
            loads.update(part)
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
