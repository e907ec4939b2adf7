"""The motion stream: motion maps from the caches, augmentations, networks, training, budgets
and its stages.
"""
