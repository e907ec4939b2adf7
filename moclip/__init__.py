"""moclip: MoCLIP-Lite video action recognition from frozen CLIP and compressed-stream motion vectors."""

__version__ = "0.1.0"
