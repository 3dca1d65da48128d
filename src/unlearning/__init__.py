"""Fast machine unlearning without retraining: SSD, LFSSD and baselines.

The pure-PyTorch core lives in :mod:`unlearning.methods.ssd`; Lightning and Hydra are
the shell around it (data module, models, callbacks, entry points).
"""

__version__ = "0.1.0"
