"""Settings objects built from the workflow's config in one place, their defaults read from
the workflow's own ``config.yaml`` and their ranges from its schema, and the hint that names
the valid value nearest a wrong one."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

# The workflow's defaults: a link to the repository's config.yaml in a clone, a copy in an
# installed package. Not in any code digest: the workflow passes every setting explicitly.
WORKFLOW_DEFAULTS = Path(__file__).parent / "data" / "config.yaml"
WORKFLOW_SCHEMA = Path(__file__).parent / "data" / "config.schema.yaml"  # likewise, of the schema


@functools.cache
def workflow_defaults() -> dict[str, Any]:
    """config.yaml, read once: every setting's default value, written in that one place."""
    return yaml.safe_load(WORKFLOW_DEFAULTS.read_text())


def default(section: str, key: str) -> Any:
    """The default of setting ``section.key`` (config.yaml's value; lists as tuples), so that a
    settings class built without arguments is the workflow's, never a copy that can drift."""
    value = workflow_defaults()[section][key]
    return tuple(value) if isinstance(value, list) else value


@functools.cache
def workflow_schema() -> dict[str, Any]:
    """schemas/config.schema.yaml, read once: every setting's type and range."""
    return yaml.safe_load(WORKFLOW_SCHEMA.read_text())


@dataclass(frozen=True)
class Bound:
    """The numbers setting ``key`` takes, as the schema states them (``auto``: it takes that word too)."""

    key: str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # exclusiveMinimum
    auto: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range, or None."""
        if self.auto and value == "auto":
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{self.key}={value!r}: {self.words()}"
        low = self.minimum is not None and value < self.minimum or self.above is not None and value <= self.above
        high = self.maximum is not None and value > self.maximum
        return f"{self.key}={value}: {self.words()}" if low or high else None

    def words(self) -> str:
        """The range in words: ``1-100``, ``2 or more``, ``more than 0`` (``auto or ...``)."""
        if self.minimum is not None and self.maximum is not None:
            text = f"{self.minimum}-{self.maximum}"
        elif self.minimum is not None:
            text = f"{self.minimum} or more"
        elif self.above is not None:
            text = f"more than {self.above}"
        else:
            text = f"at most {self.maximum}"
        return f"must be auto or {text}" if self.auto else f"must be {text}"


@functools.cache
def bound(key: str) -> Bound:
    """The range of the numeric setting ``key`` (dotted, ``frames.jpeg_quality``) in the schema,
    the one place it is written: the library's and the CLI's checks read it there."""
    section, name = key.split(".")
    prop = workflow_schema()["properties"][section]["properties"][name]
    branches = prop.get("oneOf", [prop])
    numeric = [b for b in branches if {"minimum", "maximum", "exclusiveMinimum"} & set(b)]
    if len(numeric) != 1:
        raise KeyError(f"{key}: the schema gives it no range")
    b = numeric[0]
    auto = any(x.get("const") == "auto" for x in branches)
    return Bound(key, b.get("minimum"), b.get("maximum"), b.get("exclusiveMinimum"), auto)


def check_bound(key: str, value: Any) -> None:
    """Raise ValueError naming ``key`` and its range when ``value`` is outside it (see :func:`bound`)."""
    if problem := bound(key).problem(value):
        raise ValueError(problem)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing when none is close."""
    near = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


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
