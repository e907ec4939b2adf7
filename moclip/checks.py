"""Parse-time checks of a run, before any job, shared by the workflow and ``moclip
check-config``: the dataset's entries, the prompt files, the CLIP model and tag in
open_clip's registry, the MV architecture and its weights in timm's, and whether the
weights a tag names are on this machine or can be fetched. The registries (torch, open_clip,
timm) are imported only when a real model is named."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from moclip.config import ConfigError, uses_registries, where_set
from moclip.datasets import FORMATS
from moclip.datasets import folder_videos as list_folder
from moclip.io import braced, wildcard_in
from moclip.manifest import build_manifest
from moclip.plan import dense_network, dense_on, labelled
from moclip.prompts import PromptFileError, prompt_files, prompt_set
from moclip.resources import backbone, unmeasured
from moclip.videos import ManifestError, name_problems

if TYPE_CHECKING:
    from moclip.experiments import Experiment
    from moclip.layout import Layout

log = logging.getLogger(__name__)


def check_run(
    config: dict,
    sources: Iterable[Path | str],
    videos: Path | str | None,
    lists: Path | str | None,
    folder_videos: list[str] | None = None,
    dataset: bool = True,
    under: Sequence[str] = (),
) -> None:
    """Everything a run can get wrong before its first job, as one ConfigError a problem:
    every list entry parsed as the manifest stage will (the generated demo: nothing to
    check; a folder run: its listing, ``folder_videos`` if already walked, must not be empty),
    the prompt file, and with real models the registries and the weights' files. ``dataset``
    False: all but the dataset's entries (an experiment of a run whose dataset is checked);
    ``under``: the key path of the experiment's overrides, where its keys are found first."""
    d, sources = config["dataset"], list(sources)
    if dataset and d["videos"] is not None:
        if not FORMATS[d["format"]].labelled:
            listed = folder_videos if folder_videos is not None else list_folder(videos)
            if not listed:
                raise ConfigError(f"{videos}: no video files (dataset.format: {d['format']})")
            if bad := name_problems(videos, listed):
                raise ConfigError("\n".join(bad))
        else:
            try:
                build_manifest(videos, lists, d["splits"], format=d["format"], classes=d["classes"])
            except ManifestError as e:
                raise ConfigError(str(e)) from None
    try:
        prompt_set(config["clip"]["prompts"], config["clip"]["templates"])
    except PromptFileError as e:
        raise ConfigError(f"{where_set(['clip', 'prompts'], sources, under)}clip.prompts: {e}") from None
    for f in prompt_files(config["clip"]["prompts"])[1:]:  # the files a prompt file names: inputs too
        if found := wildcard_in(str(f)):
            where = where_set(["clip", "prompts"], sources, under)
            raise ConfigError(f"{where}clip.prompts: {config['clip']['prompts']}: {braced(repr(str(f)), found)}")
    if dense_on(config):
        check_dense(config, sources, under)
    if uses_registries(config):
        check_models(config, sources, under)
        check_weights(config, sources, under=under)


def check_dense(config: dict, sources: Iterable[Path | str], under: Sequence[str] = ()) -> None:
    """The dense stage's MV network exists for the run (a split it trains, or a file), and
    it decodes the videos the caches decode (no dataset.reencode recipe)."""
    where = where_set(["dense", "mvnet"], sources, under)
    net, splits = dense_network(config), config["dataset"]["splits"]
    if config["dataset"]["reencode"] != "none":
        at = where_set(["dataset", "reencode"], sources, under)
        raise ConfigError(
            f"{at}dataset.reencode: {config['dataset']['reencode']}: the dense stage decodes the videos "
            "themselves, not re-encoded copies; set dense.every_s: null or dataset.reencode: none"
        )
    if net is None:
        raise ConfigError(
            f"{where}dense.mvnet: a folder run trains no MV network: set dense.mvnet (or features.mv_model) "
            "to a checkpoint file, a finished labelled run's mvnet/<tag>/splitK/model.pt"
        )
    if isinstance(net, int) and not labelled(config):
        raise ConfigError(f"{where}dense.mvnet: {net}: a folder run trains no split's network: give a checkpoint file")
    if isinstance(net, int) and net not in splits:
        raise ConfigError(f"{where}dense.mvnet: split {net} is not one of dataset.splits {list(splits)}")
    if isinstance(net, str) and not Path(net).is_file():
        key = ["dense", "mvnet"] if config["dense"]["mvnet"] is not None else ["features", "mv_model"]
        raise ConfigError(f"{where_set(key, sources, under)}{'.'.join(key)}: {net!r} is not a file")


def check_experiments(
    config: dict, experiments: list[Experiment], sources: Iterable[Path | str], layout: Layout
) -> None:
    """check_run for a run: its config with the dataset, then each named experiment's config
    (the dataset is the run's; an unnamed first experiment is the run itself)."""
    check_run(config, sources, layout.videos, layout.lists, layout.folder_videos)
    for e in experiments:
        if e.name:
            try:
                check_run(e.config, sources, None, None, dataset=False, under=["experiments", e.name])
            except ConfigError as err:
                raise ConfigError(f"experiment {e.name!r}: {err}") from None


def check_models(config: dict, sources: Iterable[Path | str] = (), under: Sequence[str] = ()) -> None:
    """The CLIP model and tag, and the MV architecture, looked up in open_clip's and timm's
    registries; ConfigError names the file and line that set an unknown one and the nearest
    valid name."""
    from moclip.clip_stream import ClipLoadError, tag_quick_gelu
    from moclip.mv_nets import check_arch

    c, m = config["clip"], config["mvnet"]
    try:
        tag_quick_gelu(c["model"], c["pretrained"], c.get("quick_gelu"))  # the tag or file, and its activation
    except ClipLoadError as e:
        raise ConfigError(f"{where_set(e.key.split('.'), sources, under)}{e}") from None
    try:
        check_arch(m["arch"], m["pretrained"])
    except ValueError as e:
        key = str(e).partition(":")[0].split(".")  # the message starts with the key at fault
        raise ConfigError(f"{where_set(key, sources, under)}{e}") from None
    if note := unmeasured(m["arch"]):
        log.warning("%s%s", where_set(["mvnet", "arch"], sources, under), note)


def _hub_file(repo: str, names: Iterable[str]) -> tuple[str, str | None]:
    """(the first of ``names``, the cached path of the first one cached in the Hugging Face
    cache or None), for a hub repository."""
    from huggingface_hub import try_to_load_from_cache

    names = list(names)
    for name in names:
        path = try_to_load_from_cache(repo, name)
        if isinstance(path, str):
            return name, path
    return names[0], None


def _fetchable(repo: str, name: str, timeout: float) -> str | None:
    """None when the hub answers for ``repo``'s file ``name``; else why it cannot be fetched."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        get_hf_file_metadata(hf_hub_url(repo, name), timeout=timeout)
    except Exception as e:  # no network, a proxy, a gated or moved repository
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return None


def weight_files(config: dict) -> list[tuple[str, str, str, list[str]]]:
    """The hub files a run's pretrained tags load: (setting, what it names, hub repository,
    file names in the order the library tries them); local files and random weights: none."""
    import open_clip
    import timm
    from open_clip.constants import HF_WEIGHTS_NAME
    from open_clip.pretrained import _get_safe_alternatives

    out = []
    c, m = config["clip"], config["mvnet"]
    if c["pretrained"] not in (None, "", "none") and not Path(c["pretrained"]).is_file():
        hub = open_clip.get_pretrained_cfg(c["model"], c["pretrained"]).get("hf_hub", "")
        if hub:  # open_clip's convention: "org/model/" (its default file name) or "org/model/file"
            repo, name = os.path.split(hub)
            name = name or HF_WEIGHTS_NAME
            names = [*_get_safe_alternatives(name), name]  # the order open_clip tries them
            out.append(("clip.pretrained", f"{c['model']} {c['pretrained']}", repo, names))
    if backbone(m["arch"]).timm and m["pretrained"] is not False and not Path(str(m["pretrained"])).is_file():
        name = m["arch"] if m["pretrained"] is True else f"{m['arch']}.{m['pretrained']}"
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is not None and cfg.hf_hub_id:
            out.append(
                ("mvnet.pretrained", f"{name} (ImageNet)", cfg.hf_hub_id, ["model.safetensors", "pytorch_model.bin"])
            )
    return out


def check_weights(
    config: dict, sources: Iterable[Path | str] = (), timeout: float = 10, under: Sequence[str] = ()
) -> None:
    """Each pretrained tag's weights are in the Hugging Face cache, or the hub answers for
    them: else ConfigError, one line a tag naming the setting's file and line, the model,
    where the file must go and how to get it, before any job spends a minute retrying."""
    problems = []
    for key, what, repo, names in weight_files(config):
        name, cached = _hub_file(repo, names)
        why = None if cached else _fetchable(repo, name, timeout)
        if why:
            from huggingface_hub import constants

            problems.append(
                f"{where_set(key.split('.'), sources, under)}{key}: the weights of {what} are not in the Hugging Face "
                f"cache ({constants.HF_HUB_CACHE}) and cannot be fetched ({why}); on a machine with network access "
                f"run `hf download {repo} {name}` (huggingface_hub) and copy its cache folder "
                f"models--{repo.replace('/', '--')} there, or set {key} to a local file"
                + (" (and clip.quick_gelu: true for OpenAI's weights)" if key == "clip.pretrained" else "")
            )
    if problems:
        raise ConfigError("\n".join(problems))
