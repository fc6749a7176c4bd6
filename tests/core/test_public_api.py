"""The public surface is what `jesus.__all__` says, sorted, every name importable."""

from __future__ import annotations

import jesus
import jesus_tcp


def test_exported_members_are_sorted_and_exist() -> None:
    for module in (jesus, jesus_tcp):
        assert list(module.__all__) == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_public_classes_are_exported() -> None:
    public = {
        name
        for name, value in vars(jesus).items()
        if isinstance(value, type)
        and not name.startswith("_")
        and value.__module__.startswith("jesus")
    }
    assert public <= set(jesus.__all__), public - set(jesus.__all__)
