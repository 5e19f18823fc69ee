"""A command group run without an action prints its usage and the actions it has, exit 2."""

from __future__ import annotations

import pytest

from clawgate import cli


@pytest.mark.parametrize(("group", "actions"), [
    ("memory", "status, index or search"), ("models", "list or auth"),
    ("store", "migrate or copy")])
def test_a_group_without_an_action(group: str, actions: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([group]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"usage: clawgate {group} ")
    assert err[1] == f"clawgate {group}: error: choose an action: {actions}"
