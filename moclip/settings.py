"""Settings objects built from the workflow's config in one place, their defaults read from
the workflow's own ``config.yaml``, and the hint that names the valid value nearest a wrong one."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

# The workflow's defaults: a link to the repository's config.yaml in a clone, a copy in an
# installed package. Not in any code digest: the workflow passes every setting explicitly.
WORKFLOW_DEFAULTS = Path(__file__).parent / "data" / "config.yaml"


@functools.cache
def workflow_defaults() -> dict[str, Any]:
    """config.yaml, read once: every setting's default value, written in that one place."""
    return yaml.safe_load(WORKFLOW_DEFAULTS.read_text())


def default(section: str, key: str) -> Any:
    """The default of setting ``section.key`` (config.yaml's value; lists as tuples), so that a
    settings class built without arguments is the workflow's, never a copy that can drift."""
    value = workflow_defaults()[section][key]
    return tuple(value) if isinstance(value, list) else value


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
