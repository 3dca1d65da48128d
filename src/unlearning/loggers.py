"""The run's Lightning loggers, several at once (``logger=many``, ``logger=[csv,wandb]``).

``conf/logger/*.yaml`` hold one named logger each (``csv: {_target_: ..., ...}``), as in
lightning-hydra-template, so that selecting several groups merges them into one mapping.
:func:`build_loggers` instantiates every entry; with a ``prefix`` (a method's name), each logger
prefixes its keys and a logger with a ``version`` in its config (CSV) writes to that sub-folder,
so a method's curves never overwrite the run's final metrics (logs/metrics.csv).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import Logger

from unlearning.errors import UserError


class Loggers(list):
    """A list of Lightning loggers that also answers the calls a run makes on "its logger".

    Lightning's Trainer takes it as the list it is (several loggers); the run's final record
    goes to all of them through the same three calls a single logger has. Lightning 2 dropped
    its own ``LoggerCollection``, which did exactly this. ``prefix`` is the one its loggers were built with.
    """

    prefix: str = ""

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        for logger in self:
            logger.log_hyperparams(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for logger in self:
            logger.log_metrics(metrics, step)

    def finalize(self, status: str) -> None:
        for logger in self:
            logger.finalize(status)


def logger_configs(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """``name -> config`` of every logger in a config's ``logger`` section (empty for ``logger=none``)."""
    if section is None:
        return {}
    if "_target_" in section:  # one logger written the old way, `_target_` at the top
        return {"logger": section}
    return {str(name): spec for name, spec in section.items() if spec is not None and "_target_" in spec}


def build_loggers(section: Mapping[str, Any] | None, prefix: str = "") -> Loggers:
    """Instantiate every logger of ``section`` (a config's ``logger``); with ``prefix``, keys are
    prefixed and CSV gets its own folder."""
    from hydra.utils import instantiate

    built = Loggers()
    built.prefix = prefix
    for name, spec in logger_configs(section).items():
        options: dict[str, Any] = {}
        if prefix:
            options["prefix"] = prefix
            if "version" in spec:
                options["version"] = prefix
        logger = instantiate(spec, **options)
        if not isinstance(logger, Logger):
            raise UserError(f"logger.{name} built a {type(logger).__name__}, not a Lightning logger; its _target_ "
                            "must name a class from lightning.pytorch.loggers (or a subclass of Logger).")
        built.append(logger)
    return built

