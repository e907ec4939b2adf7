"""The MV networks: the tiny CNN for CPUs and tests, or a timm backbone with an ImageNet start
whose stem takes the two MV channels, under a linear classifier (TSN: mean over segments)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from moclip.settings import did_you_mean


class TinyMVNet(nn.Module):
    """A small CNN for CPUs and tests: 2 -> 32 -> 64 -> 128 channels, global average pool.
    An own network has ``num_features`` and ``stem`` (its first layer's name), as timm's."""

    def __init__(self, width: int = 32):
        super().__init__()
        layers, c_in = [], 2
        for c in (width, width * 2, width * 4):
            layers += [
                nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.num_features = c_in
        self.stem = "body.0"  # the first convolution: its learning-rate group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))


# The project's own networks (no ImageNet start), by mvnet.arch; any other name is a timm
# architecture. Their jobs' measured figures: moclip.workflow.resources.BACKBONES.
OWN_NETS: dict[str, type[nn.Module]] = {"tiny": TinyMVNet}


class MVWeightsError(RuntimeError):
    """ImageNet weights for the MV backbone that cannot be had; the message says how to provide them."""


def check_arch(arch: str, pretrained: bool | str = False) -> None:
    """ValueError unless ``arch`` is one of :data:`OWN_NETS` or a timm architecture (naming
    the nearest) and ``pretrained`` names weights timm knows for it or an existing file;
    cheap (timm's registry only): run at parse time."""
    if arch in OWN_NETS:
        if pretrained is not False:
            msg = f"the {arch} network has no pretrained weights (set false, or a timm arch)"
            raise ValueError(f"mvnet.pretrained: {msg}")
        return
    import timm

    names = timm.list_models()
    if arch not in names:
        own = " or ".join(OWN_NETS)
        raise ValueError(f"mvnet.arch: {arch!r} is neither {own} nor a timm architecture{did_you_mean(arch, names)}")
    if pretrained is False:
        return
    if pretrained is True:
        if not timm.list_pretrained(arch):
            raise ValueError(f"mvnet.pretrained: timm has no pretrained weights for {arch}")
        return
    if isinstance(pretrained, str) and _looks_like_file(pretrained):
        if not Path(pretrained).is_file():
            raise ValueError(f"mvnet.pretrained: no such checkpoint file {pretrained!r}")
        return
    tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
    if pretrained not in tags:
        raise ValueError(
            f"mvnet.pretrained: {pretrained!r} is neither a file nor a timm tag of {arch}"
            f"{did_you_mean(str(pretrained), tags)} (tags: {', '.join(tags) or 'none'})"
        )


def _looks_like_file(value: str) -> bool:
    return "/" in value or Path(value).suffix in (".pth", ".pt", ".bin", ".safetensors") or Path(value).is_file()


def imagenet_backbone(arch: str, pretrained: bool | str) -> nn.Module:
    """timm ``arch`` with ImageNet weights (``True``: timm's default tag; a tag; or a local
    checkpoint file) and a 2-channel stem initialised as the authors (and CoViAR) do: the
    mean of the pretrained RGB kernels, for both channels."""
    import timm

    if isinstance(pretrained, str) and _looks_like_file(pretrained):
        name, kw = arch, {"pretrained_cfg_overlay": {"file": str(pretrained)}}
    else:
        name, kw = (arch if pretrained is True else f"{arch}.{pretrained}"), {}
    try:
        rgb = timm.create_model(name, pretrained=True, num_classes=0, **kw)
    except Exception as e:  # offline: huggingface_hub / urllib errors; a bad file: torch / safetensors errors
        raise MVWeightsError(
            f"mvnet.pretrained: could not load ImageNet weights {pretrained!r} for {arch}: {type(e).__name__}: {e}\n"
            f"Without network access, on a machine that has it run\n"
            f"  python -c \"import timm, torch; m = timm.create_model('{name}', pretrained=True); "
            f"torch.save(m.state_dict(), '{arch}.pth')\"\n"
            f"then copy {arch}.pth here and set mvnet.pretrained to its path (or copy the Hugging Face cache, "
            "~/.cache/huggingface/hub); or set mvnet.pretrained: false to train from scratch."
        ) from e
    stem = rgb.pretrained_cfg["first_conv"] + ".weight"
    state = rgb.state_dict()
    state[stem] = state[stem].mean(1, keepdim=True).repeat(1, 2, 1, 1)
    net = timm.create_model(arch, pretrained=False, in_chans=2, num_classes=0)
    net.load_state_dict(state)
    return net


def mean_pool(net: nn.Module) -> None:
    """Give a timm backbone's global average pool as a plain mean: the same numbers, and a
    deterministic backward on CUDA (``adaptive_avg_pool2d``'s is not)."""
    from timm.layers import SelectAdaptivePool2d

    pool = getattr(net, "global_pool", None)
    if isinstance(pool, SelectAdaptivePool2d) and pool.pool_type == "avg" and pool.flatten is not None:
        net.global_pool = SelectAdaptivePool2d(pool_type="fast", flatten=not isinstance(pool.flatten, nn.Identity))


class MVNet(nn.Module):
    """(Input BatchNorm ->) backbone on 2-channel MV maps -> pooled feature -> linear
    classifier; TSN averages the logits of a video's segments."""

    def __init__(self, arch: str, n_classes: int, pretrained: bool | str = False, input_bn: bool = False):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(2) if input_bn else nn.Identity()
        if arch in OWN_NETS:
            if pretrained is not False:
                raise MVWeightsError(f"mvnet.pretrained: the {arch} network has no pretrained weights (set false)")
            self.backbone = OWN_NETS[arch]()
            self.stem = self.backbone.stem
        else:
            import timm

            if pretrained is False:
                self.backbone = timm.create_model(arch, pretrained=False, in_chans=2, num_classes=0)
            else:
                self.backbone = imagenet_backbone(arch, pretrained)
            mean_pool(self.backbone)
            # NHWC weights (and so activations): EfficientNet-B0 on 2 CPU threads ran 1.7x the
            # inputs/s in inference and 1.65x in training against NCHW (same outputs to 2e-11);
            # the layout of timm's and NVIDIA's mixed-precision recipes on GPUs.
            self.backbone.to(memory_format=torch.channels_last)
            self.stem = self.backbone.pretrained_cfg["first_conv"]
        self.channels_last = arch not in OWN_NETS
        self.classifier = nn.Linear(self.backbone.num_features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, 2, H, W] -> pooled features [N, D]. Off the CPU a channels-last backbone gets
        its input channels-last too (the input BN and the stem then need no transpose); on
        the CPU the input stays as it is, so that CPU results stay those of earlier runs."""
        if x.device.type != "cpu" and self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(self.input_bn(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, 2, H, W] -> video logits [B, C] (mean over segments)."""
        b, s = x.shape[:2]
        return self.classifier(self.features(x.flatten(0, 1))).view(b, s, -1).mean(1)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The authors' learning-rate groups: ``classifier``; ``stem`` (the first convolution
        and the input BN); ``backbone`` (every other layer)."""
        groups: dict[str, list[nn.Parameter]] = {"classifier": [], "stem": [], "backbone": []}
        for name, p in self.named_parameters():
            if name.startswith("classifier."):
                groups["classifier"].append(p)
            elif name.startswith(("input_bn.", f"backbone.{self.stem}.")):
                groups["stem"].append(p)
            else:
                groups["backbone"].append(p)
        return groups
