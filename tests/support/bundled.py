"""Import a bundled plugin's module for a unit test of it.

Bundled plugins are plugin folders, not packages of clawgate (the loader imports each under a
private name). A test of one of their modules (the echo or OpenAI provider) imports the file
directly; the module may import only ``clawgate``, which is the rule for bundled plugins anyway.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BUNDLED = Path(__file__).resolve().parents[2] / "src" / "clawgate" / "bundled"


def module(plugin: str, name: str) -> ModuleType:
    """``src/clawgate/bundled/<plugin>/<name>.py`` as a module (imported once per process)."""
    qualified = f"_bundled_{plugin.replace('-', '_')}_{name}"
    loaded = sys.modules.get(qualified)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(qualified, BUNDLED / plugin / f"{name}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = loaded
    spec.loader.exec_module(loaded)
    return loaded
