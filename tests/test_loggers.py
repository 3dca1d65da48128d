"""Several loggers at once, and who logs under which prefix (the real run: tests/test_debug_configs.py)."""

from __future__ import annotations

import pytest
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from tests.conftest import compose_config
from unlearning.errors import UserError
from unlearning.jobs.builders import curve_logger
from unlearning.loggers import Loggers, build_loggers


@pytest.mark.parametrize("choice", ["many", "[csv,wandb]"])
def test_several_loggers_compose(choice):
    cfg = compose_config("unlearn", [f"logger={choice}"])
    assert set(cfg.logger) == {"csv", "wandb"} and cfg.logger.wandb.offline is True
    assert compose_config("unlearn", ["logger=none"]).logger is None


def test_prefixed_loggers_keep_a_method_apart(tmp_path):
    cfg = compose_config("unlearn", ["logger=many", f"logger.csv.save_dir={tmp_path}", f"logger.wandb.save_dir={tmp_path}",
                                     "method=scrub"])
    loggers = curve_logger(cfg, False, {"max_epochs": 2})
    assert isinstance(loggers, Loggers) and [type(lg) for lg in loggers] == [CSVLogger, WandbLogger]
    assert loggers[0].version == "scrub" and all(lg._prefix == "scrub" for lg in loggers)
    assert curve_logger(cfg, False, {"max_epochs": 0}) is False, "a weight-editing fit logs nothing"
    assert curve_logger(compose_config("audit", ["logger=many"]), False, {"max_epochs": 2}) is False
    assert [lg._prefix for lg in curve_logger(cfg, "reference", {})] == ["reference", "reference"]
    bad = compose_config("unlearn", ["+logger.bad._target_=collections.OrderedDict", "logger=csv",
                                     f"logger.csv.save_dir={tmp_path}"])
    with pytest.raises(UserError, match="logger.bad built a OrderedDict"):
        build_loggers(bad.logger)
