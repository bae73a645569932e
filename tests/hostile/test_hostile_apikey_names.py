"""An API key name past the column's width, or with control characters, is refused with the
field named, from every door (service, used by the API, the CLI and the console); before, a long
name from the CLI reached PostgreSQL and failed there. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.services import apikeys
from app.services.node import Node


@pytest.mark.parametrize("name", ["k" * 129, "a\nb", "tab\there", ""])
def test_bad_key_names_are_refused_naming_the_field(node: Node, name: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        apikeys.create(node, name, ["match"])
    assert exc.value.field == "name"
    assert all(k.name != name for k in apikeys.list_keys(node))


def test_a_name_at_the_limit_is_kept_whole(node: Node) -> None:
    created = apikeys.create(node, "é" * 128, ["match"])
    assert created.name == "é" * 128
