"""The automatic SSD mode as a Lightning callback: SSD's importances, then :class:`AutoSearch`.

Only :meth:`SSDCallback.dampen_model` changes: instead of one fixed alpha, the search of
:mod:`unlearning.methods.ssd_auto` picks alpha (and the dampening scope) per request. The
probe it uses is built from the data module's *training* splits only (Df and a seeded
sample of Dr); test data is never read.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from unlearning.methods.ssd_auto import AUTO, AutoSearch, AutoSettings, Probe, sample_images
from unlearning.methods.ssd_callback import SSDCallback


class AutoSSDCallback(SSDCallback):
    """:class:`SSDCallback` whose dampening searches alpha per request (``method.alpha=auto``)."""

    def __init__(self, settings: AutoSettings | None = None, variant: str = "ssd", batch_size: int = 64,
                 **kwargs: Any):
        # alpha/lambda are chosen per request; the parent's numeric check gets neutral values.
        super().__init__(1.0, 1.0, variant, batch_size, **kwargs)
        self.alpha = self.lambda_ = AUTO
        self.settings = settings or AutoSettings()
        self.search_info: dict[str, Any] = {}

    def dampen_model(self, trainer: L.Trainer, model: torch.nn.Module) -> int:
        data = trainer.datamodule
        s = self.settings
        probe = Probe(
            forget_images=sample_images(data.dataset("forget"), s.forget_samples, s.seed),
            retain_images=sample_images(data.dataset("retain"), s.retain_samples, s.seed + 1),
        )

        def agree(choice: Any) -> Any:
            return choice if trainer.world_size == 1 else trainer.strategy.broadcast(choice, src=0)

        def refresh_forget(dampened: torch.nn.Module) -> dict[str, torch.Tensor]:
            return self.importances_on_all_ranks(trainer, dampened, "forget")

        n_forget = len(data.indices("forget"))
        search = AutoSearch(s, importance_work=3.0 * (len(data.indices("full")) + n_forget))
        self.search_info = search.run(model, self.full, self.forget, probe, agree, refresh_forget,
                                      refresh_cost=3.0 * n_forget)
        return int(self.search_info["parameters_changed"])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        info = dict(self.search_info)
        self.summary.update({**info, "alpha": AUTO, "lambda": info.get("chosen_lambda")})
