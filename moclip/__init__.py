"""moclip: MoCLIP-Lite video action recognition from frozen CLIP and compressed-stream motion vectors."""

__version__ = "0.1.0"

# The library's calls for a user's code, imported on first use (PEP 562): ``import moclip``
# and the workflow's scripts load nothing of them.
_PUBLIC = {"load_features": "moclip.features", "Features": "moclip.features"}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'moclip' has no attribute {name!r}")
