"""The methods a run compares, named once: zero-shot CLIP, the MV network alone, and the
heads trained on precomputed features."""

HEADS = ("clip_linear", "fusion")  # trained on frozen features, per split
METHODS = ("zeroshot", "mv_only", *HEADS)  # the order of every table
