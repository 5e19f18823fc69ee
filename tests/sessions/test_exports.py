"""``clawgate.sessions.__all__`` lists exactly the public names, each documented."""

from __future__ import annotations

import inspect

import clawgate.sessions as sessions


def test_all_is_honest() -> None:
    public = {
        n for n, v in vars(sessions).items()
        if not n.startswith("_") and not inspect.ismodule(v) and n != "annotations"
    }
    assert set(sessions.__all__) == public
    for name in sessions.__all__:
        obj = getattr(sessions, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name
