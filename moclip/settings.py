"""Settings objects built from the workflow's config in one place."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


class FromConfig:
    """Mixin for frozen settings dataclasses: ``from_config`` builds one from a config section
    (lists become tuples; an unknown key is an error naming it)."""

    @classmethod
    def from_config(cls, section: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown setting(s) {unknown} (known: {sorted(known)})")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
