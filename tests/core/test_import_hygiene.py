"""The core must work without the UI framework: importing it never loads textual or rich."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import runctl_tui.core


def core_modules() -> list[str]:
    """Every module below runctl_tui.core, found on disk so new modules are covered too."""
    return sorted(
        info.name
        for info in pkgutil.walk_packages(runctl_tui.core.__path__, prefix="runctl_tui.core.")
    )


def test_core_has_modules() -> None:
    names = core_modules()
    assert "runctl_tui.core.config" in names
    assert "runctl_tui.core.models" in names


def test_importing_every_core_module_loads_no_ui_framework() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')"
        " or m.startswith('runctl_tui.ui'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"core imported UI modules: {result.stdout.strip()}"


def test_cli_help_loads_no_ui_framework() -> None:
    code = (
        "import sys\n"
        "from runctl_tui.cli import build_parser\n"
        "build_parser()\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
