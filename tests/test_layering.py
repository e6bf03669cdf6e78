"""The import-layering check itself, on a small package made for it (issue 11): an upward
import and a cycle are both found and named; a package whose imports run one way passes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.layering import Violation, check

LAYERS = [["fixpkg.low", "fixpkg.a", "fixpkg.b"], ["fixpkg.high"]]


def make_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "fixpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, source in files.items():
        (pkg / f"{name}.py").write_text(source)
    return pkg


async def test_an_upward_import_and_a_cycle_are_found_and_named(tmp_path: Path) -> None:
    pkg = make_package(tmp_path, {
        "low": "import fixpkg.high  # upward: low must not know high\n",
        "high": "VALUE = 1\n",
        "a": "import fixpkg.b\n",
        "b": "import fixpkg.a\n",
    })
    found = await asyncio.to_thread(check, pkg, "fixpkg", LAYERS, [str(tmp_path)])
    assert found == [Violation("cycle", "fixpkg.a", "fixpkg.b"),
                     Violation("upward", "fixpkg.low", "fixpkg.high")]
    assert [str(v) for v in found] == ["cycle: fixpkg.a <-> fixpkg.b",
                                       "upward import: fixpkg.low loads fixpkg.high"]


async def test_imports_that_run_one_way_pass(tmp_path: Path) -> None:
    pkg = make_package(tmp_path, {
        "low": "VALUE = 1\n",
        "high": "import fixpkg.low\nfrom fixpkg import a\n",
        "a": "import fixpkg.low\n",
        "b": "import fixpkg.a\n",
    })
    assert await asyncio.to_thread(check, pkg, "fixpkg", LAYERS, [str(tmp_path)]) == []



async def test_a_module_no_layer_names_is_reported(tmp_path: Path) -> None:
    pkg = make_package(tmp_path, {"low": "", "stray": ""})
    assert await asyncio.to_thread(check, pkg, "fixpkg", LAYERS, [str(tmp_path)]) == [
        Violation("unplaced", "fixpkg.stray")]


# The house, bottom floor first (DESIGN.md "Module map"): each floor imports only floors below
# it. The load tester stands on the wire formats and codecs alone, beside the server.
LOA_LAYERS = [
    ["loa.core"],
    ["loa.codecs"],
    ["loa.protocol"],
    ["loa.loadtest"],
    ["loa.playout"],
    ["loa.control", "loa.config"],
    ["loa.monitoring"],
    ["loa.api"],
    ["loa.app", "loa.cli", "loa.__main__"],
]


ROOT = Path(__file__).resolve().parent.parent


async def test_loa_imports_run_one_way() -> None:
    root = ROOT
    found = await asyncio.to_thread(check, root / "loa", "loa", LOA_LAYERS, [str(root)])
    assert [str(v) for v in found] == []
