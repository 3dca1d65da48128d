"""Unlearning methods: one module per method over :class:`UnlearningMethod`.

Hydra picks a method with ``method=NAME``: ``conf/method/NAME.yaml`` names the class in
``_target_`` and holds every hyperparameter. The SSD family (SSD, LFSSD, ASSD, the automatic
mode) is the package :mod:`.ssd`: a pure-torch core, alpha policies and one callback.
"""
