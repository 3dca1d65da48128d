"""Unlearning methods: one module per method over :class:`UnlearningMethod`.

Hydra picks a method with ``method=NAME``: ``conf/method/NAME.yaml`` names the class in
``_target_`` and holds every hyperparameter. SSD's pure-torch core is :mod:`.ssd`.
"""
