"""Video files: one PyAV decode pass, the encoder, the per-video caches and their frames, re-
encodes.
"""
