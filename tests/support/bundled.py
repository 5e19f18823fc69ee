"""Import a bundled plugin's module for a unit test of it.

Bundled plugins are plugin folders, not packages of clawgate (the loader imports each under a
private name). A test of one of their modules (the echo or OpenAI provider) imports it here as
a submodule of a private package whose path is the plugin folder, as the loader does, so the
plugin's relative imports (``from .http import ...``) work; the modules may import only
``clawgate``, which is the rule for bundled plugins anyway.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BUNDLED = Path(__file__).resolve().parents[2] / "src" / "clawgate" / "bundled"


def module(plugin: str, name: str) -> ModuleType:
    """``src/clawgate/bundled/<plugin>/<name>.py`` as a module (imported once per process)."""
    package = f"_bundled_{plugin.replace('-', '_')}"
    if package not in sys.modules:
        spec = importlib.util.spec_from_loader(package, loader=None, is_package=True)
        assert spec is not None
        root = importlib.util.module_from_spec(spec)
        root.__path__ = [str(BUNDLED / plugin)]
        sys.modules[package] = root
    return importlib.import_module(f"{package}.{name}")
