"""The Control UI's committed bundle is the build of the modules beside it, and the bundler
refuses module syntax it does not understand instead of bundling it wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawgate.gateway import uibundle
from clawgate.gateway.control_ui import load


def test_the_committed_bundle_is_fresh() -> None:
    committed = (uibundle.UI_DIR / uibundle.OUTPUT).read_text(encoding="utf-8")
    assert committed == uibundle.build(), (
        "ui/bundle.js is stale: run .venv/bin/python -m clawgate.gateway.uibundle")
    assert uibundle.main(["--check"]) == 0


def test_the_page_loads_the_bundle_only() -> None:
    index = load()["index.html"].body.decode()
    assert '<script type="module" src="ui/bundle.js"></script>' in index
    assert index.count("<script") == 1


def test_every_module_is_in_the_bundle_once() -> None:
    text = uibundle.build()
    for name in uibundle.modules():
        assert text.count(f"define({name!r},") == 1, name
    assert "bundle.js" not in uibundle.modules()


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    return tmp_path


def test_imports_and_exports_become_loads_and_getters(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "app.js": 'import { two } from "./lib/b.js";\nconst later = import("./lib/c.js");\n',
        "lib/b.js": "export function two() { return 2; }\nexport const three = 3;\n",
        "lib/c.js": "export class C {}\n",
    })
    text = uibundle.build(root)
    assert "const { two } = load('lib/b.js');" in text
    assert "const later = lazy('lib/c.js');" in text
    assert "two: { get: () => two, enumerable: true }" in text
    assert "three: { get: () => three" in text and "\nconst three = 3;" in text
    assert text.rstrip().endswith("load('app.js');")


@pytest.mark.parametrize(("body", "problem"), [
    ('import * as b from "./b.js";\n', "unsupported import form"),
    ('import { b } from "https://cdn.example/b.js";\n', "unsupported import form"),
    ("export default function f() {}\n", "unsupported export form"),
    ("const a = 1;\nexport { a };\n", "unsupported"),
    ("console.log(import.meta.url);\n", "unsupported module syntax"),
    ('import { b } from "./missing.js";\n', "does not exist"),
    ('import { b } from "../../outside.js";\n', "outside the UI"),
])
def test_unknown_forms_are_refused_with_file_and_line(
        tmp_path: Path, body: str, problem: str) -> None:
    root = _tree(tmp_path, {"app.js": body})
    with pytest.raises(uibundle.BundleError, match=problem) as info:
        uibundle.build(root)
    assert "app.js" in str(info.value)


def test_an_import_cycle_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "app.js": 'import { b } from "./b.js";\nexport function a() {}\n',
        "b.js": 'import { a } from "./app.js";\nexport function b() {}\n',
    })
    with pytest.raises(uibundle.BundleError, match="import cycle"):
        uibundle.build(root)
