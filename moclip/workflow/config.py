"""The workflow's configuration files: read with the file and line in every error, checked
against the schema with one short message that names the key, where it was set, and the
nearest valid name (instead of a page of schema)."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from pathlib import Path

import jsonschema
import yaml

from moclip.io import braced, wildcard_in
from moclip.settings import did_you_mean
from moclip.workflow.resources import BACKBONES


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line a problem."""


class CommandLine(dict):
    """The ``--config`` values as Snakemake parsed them (``workflow.config_settings
    .overwrite_config``), a source of settings after the files: :func:`where_set` names it
    ``--config``, and :func:`load_config` merges it typed (:func:`typed`)."""

    def sets(self, keys: Iterable[str]) -> bool:
        node = self
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return False
            node = node[k]
        return True


def typed(value):
    """A ``--config`` value with each string inside a mapping or list read as a YAML scalar:
    Snakemake reads a nested value (``heads='{"lr": 0.01}'``) with YAML's base loader, which
    leaves every leaf a string (``'0.01'``), and merges it into the nested block; a leaf YAML
    reads as a mapping or list (``'photo: {}'``) stays the string it was; numbers are read
    as Snakemake reads a top-level value (``1e-3`` too)."""

    def leaf(v):
        if isinstance(v, dict):
            return {k: leaf(x) for k, x in v.items()}
        if isinstance(v, list):
            return [leaf(x) for x in v]
        if not isinstance(v, str):
            return v
        for number in (int, float):  # as Snakemake reads a top-level value: 1e-3 is a number
            try:
                return number(v)
            except ValueError:
                pass
        try:
            read = yaml.safe_load(v)
        except yaml.YAMLError:
            return v
        return read if read is None or isinstance(read, (bool, int, float, str)) else v

    if isinstance(value, dict):
        return {k: leaf(v) if isinstance(v, (dict, list)) else v for k, v in value.items()}
    return value


# The settings that name a file or folder Snakemake sees as a path (inputs and params), and
# the one every output path starts with.
PATH_KEYS = (
    ("dataset", "videos"),
    ("dataset", "lists"),
    ("dataset", "classes"),
    ("clip", "prompts"),
    ("features", "mv_model"),
    ("dense", "mvnet"),
)
OUTPUT_KEY = ("results",)


_FLOAT = "tag:yaml.org,2002:float"


class _Refused(Exception):
    """What the strict loader refuses, at the line (1-based) of the node at fault."""

    def __init__(self, node: yaml.Node, text: str):
        super().__init__(text)
        self.line, self.text = node.start_mark.line + 1, text


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader refusing what a config must not hold: a key given twice in one
    mapping (YAML keeps the last in silence) and a NaN or infinite number (``.nan``,
    ``.inf``: YAML floats that pass a schema's number type and its minimum)."""

    def _finite(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _FLOAT and not math.isfinite(self.construct_object(node)):
            raise _Refused(node, f"{node.value} is not a number a setting can take (NaN or infinity)")

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _Refused(key_node, f"key given twice, at lines {seen[key]} and {line} (YAML keeps the last)")
            seen[key] = line
            self._finite(value_node)
        return super().construct_mapping(node, deep=deep)

    def construct_sequence(self, node, deep=False):
        for item in node.value:
            self._finite(item)
        return super().construct_sequence(node, deep=deep)


def _key_at(path: Path | str, line: int) -> str | None:
    """The dotted path of the last key on ``line`` of a YAML file (for a message), or None."""

    def keys(node: yaml.Node, prefix: tuple):
        if isinstance(node, yaml.MappingNode):
            for kn, vn in node.value:
                yield (*prefix, str(kn.value)), kn
                yield from keys(vn, (*prefix, str(kn.value)))
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                yield from keys(item, prefix)

    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    hits = [".".join(k) for k, n in keys(root, ()) if n.start_mark.line + 1 == line] if root else []
    return hits[-1] if hits else None


def load_yaml(path: Path | str) -> dict:
    """A YAML mapping; a syntax error, a key given twice (at any depth) or a NaN or infinite
    number names the file, line and key. A file that sets nothing (empty, or ``null``) is an
    error, as Snakemake refuses such a --configfile; ``{}`` sets nothing and is valid in both."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {e.problem or e.context}") from None
    except _Refused as e:
        key = _key_at(path, e.line)
        raise ConfigError(f"{path}:{e.line}: {key + ': ' if key else ''}{e.text}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if data is None:
        raise ConfigError(
            f"{path}: the file sets nothing (empty or null), which Snakemake refuses as a --configfile: "
            "give at least one key, or write {} for none"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a configuration is a mapping of keys, not a {type(data).__name__}")
    return data


def key_line(path: Path | str, keys: Iterable[str]) -> int | None:
    """Line (1-based) where the key path ``keys`` is set in a YAML file, or None."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for k in keys:
        if not isinstance(node, yaml.MappingNode):
            return line
        hit = next(((kn, vn) for kn, vn in node.value if kn.value == str(k)), None)
        if hit is None:
            return None
        line, node = hit[0].start_mark.line + 1, hit[1]
    return line


def where_set(keys: Iterable[str], sources: Iterable[Path | str], under: Iterable[str] = ()) -> str:
    """``file:line: `` of the last of ``sources`` that sets the key path ``keys`` (later
    files win, as they merge), or nothing when none does. ``under``: a key path (an
    experiment's) where the key is looked for first."""
    keys, sources, under = list(keys), list(sources), list(under)
    for path in [[*under, *keys], keys] if under else [keys]:
        for src in reversed(sources):
            if isinstance(src, CommandLine):
                if src.sets(path):
                    return "--config: "
                continue
            line = key_line(src, path)
            if line is not None:
                return f"{src}:{line}: "
    return ""


def _message(err: jsonschema.ValidationError, sources: list[Path], under: list[str]) -> str:
    keys = [str(k) for k in err.absolute_path]

    def at(keys: list[str]) -> str:  # where an experiment sets the key, else where the run does
        return where_set(keys, sources, under)

    name = ".".join(keys) or "the configuration"
    if err.validator == "additionalProperties":
        allowed = err.schema.get("properties", {})
        extra = sorted(set(err.instance) - set(allowed))
        k = extra[0]
        full = ".".join([*keys, k])
        return f"{at([*keys, k])}unknown key {full!r}{did_you_mean(k, allowed)}; valid keys here: " + (
            ", ".join(allowed)
        )
    if err.validator == "required":
        return f"{name}: missing key {err.message.split()[0]} (config.yaml sets every key: was it removed?)"
    if err.validator == "enum":
        return f"{at(keys)}{name}: {err.instance!r} is not one of {err.validator_value}" + did_you_mean(
            err.instance, err.validator_value
        )
    if err.validator in ("oneOf", "anyOf"):
        branches = [_describe(b) for b in err.validator_value]
        consts = [b["const"] for b in err.validator_value if "const" in b]
        return f"{at(keys)}{name}: {err.instance!r} is not {' or '.join(branches)}" + (
            did_you_mean(err.instance, consts) if isinstance(err.instance, str) else ""
        )
    return f"{at(keys)}{name}: {err.message}"


def _describe(schema: dict) -> str:
    """A schema branch in words: ``an integer >= 1``, ``'auto'``."""
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    kind = schema.get("type", "a value")
    text = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false"}.get(
        kind, str(kind)
    )
    if "minimum" in schema:
        text += f" >= {schema['minimum']}"
    return text


def check_config(
    config: dict, schema: Path | str | dict, sources: Iterable[Path | str] = (), under: Iterable[str] = ()
) -> None:
    """Raise ConfigError naming every problem of ``config`` against ``schema``, one line
    each, at the file and line of ``sources`` (the files merged into it, in order) that set
    the key: under the key path ``under`` where it is set there (an experiment's overrides)."""
    schema = schema if isinstance(schema, dict) else load_yaml(schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(config))
    sources = [s if isinstance(s, CommandLine) else Path(s) for s in sources]
    lines = sorted({_message(e, sources, list(under)) for e in errors})
    lines += [  # the schema's number type takes NaN and infinity (from a --config override)
        f"{where_set(keys, sources, under)}{'.'.join(keys)}: {v} is not a number a setting can take (NaN or infinity)"
        for keys, v in _non_finite(config)
    ]
    if not lines:
        lines = _braced_paths(config, sources, list(under))
    if lines:
        raise ConfigError("\n".join(lines))


def _braced_paths(config: dict, sources: list[Path], under: list[str]) -> list[str]:
    """One line a path setting (of a valid config) holding a Snakemake wildcard."""
    lines = []
    for keys in (OUTPUT_KEY, *PATH_KEYS):
        value = config
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if isinstance(value, str) and (found := wildcard_in(value, outputs=keys == OUTPUT_KEY)):
            lines.append(f"{where_set(keys, sources, under)}{'.'.join(keys)}: {braced(repr(value), found)}")
    return lines


def _non_finite(value, keys: tuple = ()):
    """(key path, value) of each NaN or infinite float in a config."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, (*keys, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite(v, (*keys, str(i)))
    elif isinstance(value, float) and not math.isfinite(value):
        yield list(keys), value


def uses_registries(config: dict) -> bool:
    """Whether checking the model names needs open_clip's and timm's registries (and so
    torch): not for the project's own small models with random weights (demo, tests)."""
    own = Path(__file__).parents[1] / "model_configs" / f"{config['clip']['model']}.json"
    mv = config["mvnet"]
    own_mv = mv["arch"] in BACKBONES and not BACKBONES[mv["arch"]].timm
    return not (own.is_file() and config["clip"]["pretrained"] == "none" and own_mv and not mv["pretrained"])


def load_config(files: Iterable[Path | str | CommandLine]) -> dict:
    """The files merged key by key in order, as Snakemake merges --configfile files, then
    the ``--config`` values (a :class:`CommandLine`) typed and merged the same way."""
    out: dict = {}
    for f in files:
        out = merge_config(out, typed(f) if isinstance(f, CommandLine) else load_yaml(f))
    return out


def merge_config(base: dict, change: dict) -> dict:
    """``change`` merged into ``base`` key by key, as Snakemake merges config files: a new
    config sharing no dict or list with either (an experiment's edit reaches no other)."""
    out = copy.deepcopy(base)
    for k, v in copy.deepcopy(change).items():
        out[k] = merge_config(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def ordered_like(config: dict, reference: dict) -> dict:
    """``config`` with its keys in ``reference``'s order (config.yaml's), recursively; keys
    the reference lacks (experiment names) follow in their own order. Snakemake keeps a
    config file's key order, and a param built from a section is a dict whose order counts
    as a change: without this, reordering keys in a user's file reran the demo and all after."""
    keys = [k for k in reference if k in config] + [k for k in config if k not in reference]
    return {
        k: ordered_like(config[k], reference[k])
        if isinstance(config[k], dict) and isinstance(reference.get(k), dict)
        else config[k]
        for k in keys
    }
