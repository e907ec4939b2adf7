"""Parse-time checks of a run, before any job, shared by the workflow and ``moclip
check-config``: the dataset's entries, the prompt files, the CLIP model and tag in
open_clip's registry, the MV architecture and its weights in timm's, and whether the
weights a tag names are on this machine or can be fetched. The registries (torch, open_clip,
timm) are imported only when a real model is named."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from moclip.clip.prompts import PromptFileError, prompt_files, prompt_set
from moclip.dataset.formats import FORMATS
from moclip.dataset.formats import folder_videos as list_folder
from moclip.dataset.manifest import build_manifest
from moclip.dataset.videos import ManifestError, name_problems
from moclip.io import braced, wildcard_in
from moclip.workflow.config import ConfigError, uses_registries, where_set
from moclip.workflow.plan import dense_network, dense_on, labelled
from moclip.workflow.resources import backbone, unmeasured

if TYPE_CHECKING:
    from moclip.workflow.experiments import Experiment
    from moclip.workflow.layout import Layout

log = logging.getLogger(__name__)
AT_LINE = re.compile(r"^[^\n]+?:\d+: ")  # an error that already names a file and its line


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

    def at(section: str, key: str) -> str:
        return where_set([section, key], sources, under)

    if dataset and d["videos"] is not None:
        if not FORMATS[d["format"]].labelled:
            listed = folder_videos if folder_videos is not None else list_folder(videos)
            if not listed:
                raise ConfigError(
                    f"{at('dataset', 'videos')}dataset.videos: {videos}: no video files (dataset.format: folder)"
                )
            if bad := name_problems(videos, listed):
                raise ConfigError("\n".join(bad))
        else:
            try:
                build_manifest(videos, lists, d["splits"], format=d["format"], classes=d["classes"])
            except ManifestError as e:  # a list's own file:line, else the setting that named the lists
                where = "" if AT_LINE.match(str(e)) else f"{at('dataset', 'lists')}dataset.lists: "
                raise ConfigError(f"{where}{e}") from None
    model = config["features"]["mv_model"]
    if not FORMATS[d["format"]].labelled and model and not os.path.isfile(model):
        raise ConfigError(f"{at('features', 'mv_model')}features.mv_model: {model!r} is not a file")
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
        start_hub_probe(config)  # the network's answer comes while the registries load
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
    from moclip.clip.stream import ClipLoadError, tag_quick_gelu
    from moclip.mv.nets import check_arch

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


# How long the check waits for the Hugging Face hub's host (or the proxy) to take a
# connection: a machine without network is known in this time, once a process, instead of
# in the HTTP client's timeout for every file (10 s each, and DNS retries before that).
CONNECT_TIMEOUT = 2.0
OFFLINE_HINT = "on a machine without network, HF_HUB_OFFLINE=1 skips this wait"


def start_hub_probe(config: dict) -> None:
    """Start :func:`hub_probe` where the check may ask the hub: a pretrained setting names a
    tag (not a file, none or random weights) and HF_HUB_OFFLINE is not set."""
    from huggingface_hub import constants

    tags = [config["clip"]["pretrained"], config["mvnet"]["pretrained"]]
    if not constants.HF_HUB_OFFLINE and any(
        t not in (None, False, "", "none") and (t is True or not Path(str(t)).is_file()) for t in tags
    ):
        hub_probe()


def hub_address() -> tuple[str, int]:
    """(host, port) the hub's client connects to first: the proxy's where one is set for
    the hub's endpoint ($HF_ENDPOINT, https://huggingface.co by default), else the hub's."""
    import urllib.request
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    proxies = urllib.request.getproxies()
    proxy = None if urllib.request.proxy_bypass(url.hostname or "") else proxies.get(url.scheme, proxies.get("all"))
    target = urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else url
    return target.hostname or "", target.port or (443 if target.scheme == "https" else 80)


class _Probe(threading.Thread):
    """One TCP connection to ``address`` (name lookup included), in the background: its
    error once done, or still running."""

    def __init__(self, address: tuple[str, int], timeout: float):
        super().__init__(name="moclip-hub-probe", daemon=True)
        self.address, self.timeout, self.error, self.started = address, timeout, None, time.monotonic()
        self.start()

    def run(self) -> None:
        try:
            socket.create_connection(self.address, timeout=self.timeout).close()
        except TimeoutError:
            self.error = "timeout"
        except OSError as e:
            self.error = f"{type(e).__name__}: {e}"


_PROBES: dict[tuple[str, int], _Probe] = {}
_VERDICTS: dict[tuple[str, int], str | None] = {}  # address -> why it is unreachable, or None: once a process


def hub_probe(timeout: float = CONNECT_TIMEOUT) -> _Probe:
    """Start (once a process) the connection to the hub's address; :func:`hub_unreachable`
    reads its answer."""
    address = hub_address()
    if address not in _PROBES:
        _PROBES[address] = _Probe(address, timeout)
    return _PROBES[address]


def hub_unreachable(timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when the hub's host (or proxy) takes a connection within ``timeout`` seconds of
    the probe's start; else why not. Decided once a process, whatever the files asked."""
    probe = hub_probe(timeout)
    if probe.address not in _VERDICTS:
        probe.join(max(0.0, probe.started + timeout - time.monotonic()))
        host, port = probe.address
        if probe.is_alive() or probe.error == "timeout":  # a name lookup that hangs, or packets dropped
            _VERDICTS[probe.address] = f"no connection to {host}:{port} within {timeout:g} s; {OFFLINE_HINT}"
        else:
            _VERDICTS[probe.address] = probe.error and f"{host}:{port}: {probe.error}; {OFFLINE_HINT}"
    return _VERDICTS[probe.address]


def _fetchable(repo: str, name: str, timeout: float) -> str | None:
    """None when the hub answers for ``repo``'s file ``name``; else why it cannot be fetched:
    HF_HUB_OFFLINE at once, no network within :data:`CONNECT_TIMEOUT` (once), then the hub's
    answer for the file, a network failure remembered for the next files."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if why := hub_unreachable():
        return why
    try:
        get_hf_file_metadata(hf_hub_url(repo, name), timeout=timeout)
    except HfHubHTTPError as e:  # the hub answered: a gated, moved or missing file (this file's own answer)
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    except Exception as e:  # connected, then no answer (a proxy, a firewall): the same for every file
        _VERDICTS[hub_address()] = why = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        return why
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
