"""The parse-time layer: what the Snakefile and rules/common.smk import at every parse (config,
the plan, the layout, experiments, checks, resources, provenance); no torch, torchvision, av
or h5py at import.
"""
