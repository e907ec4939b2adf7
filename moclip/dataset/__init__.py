"""Datasets: the formats that list a dataset's videos, the manifest, its table of videos, the
demo.
"""
