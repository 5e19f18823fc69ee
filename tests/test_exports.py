"""``clawgate.__all__`` is the plugin author's API: sorted, complete and honest."""

from __future__ import annotations
import __future__

import types

import clawgate


def isort_style(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: SCREAMING_CASE constants, then CamelCase classes, then the rest."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted_and_unique() -> None:
    assert list(clawgate.__all__) == sorted(clawgate.__all__, key=isort_style)
    assert len(set(clawgate.__all__)) == len(clawgate.__all__)


def test_every_name_in_all_exists() -> None:
    for name in clawgate.__all__:
        assert hasattr(clawgate, name), name


def test_every_public_attribute_is_exported() -> None:
    public = {
        name for name, value in vars(clawgate).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and not isinstance(value, __future__._Feature)  # `from __future__ import annotations`
    }
    assert public <= set(clawgate.__all__), public - set(clawgate.__all__)


def test_version_is_a_string() -> None:
    assert isinstance(clawgate.__version__, str) and clawgate.__version__
