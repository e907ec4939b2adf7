"""Parse-time checks of a configuration against the model registries: the CLIP model and
tag in open_clip's, the MV architecture and its weights in timm's. Importing this module imports torch,
open_clip and timm, so the Snakefile imports it in its main process only."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from moclip.clip_stream import ClipLoadError, check_clip
from moclip.config import ConfigError, where_set
from moclip.mv_stream import check_arch


def check_models(config: dict, sources: Iterable[Path | str] = ()) -> None:
    """The CLIP model and tag, and the MV architecture, looked up in open_clip's and timm's
    registries; ConfigError names the file and line that set an unknown one and the nearest
    valid name."""
    c, m = config["clip"], config["mvnet"]
    try:
        check_clip(c["model"], c["pretrained"])
    except ClipLoadError as e:
        raise ConfigError(f"{where_set(e.key.split('.'), sources)}{e}") from None
    try:
        check_arch(m["arch"], m["pretrained"])
    except ValueError as e:
        key = str(e).partition(":")[0].split(".")  # the message starts with the key at fault
        raise ConfigError(f"{where_set(key, sources)}{e}") from None
