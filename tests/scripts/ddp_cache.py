"""Run SSD with the tensor cache on 2 CPU processes (DDP) and record every rank's dampened weights.

Usage: python ddp_cache.py CACHE_DIR OUT_JSON. Lightning's DDP launcher starts rank 1 by
running this script again; rank 0 writes OUT_JSON with the weights digest of each rank.
"""

from __future__ import annotations

import json
import sys
import warnings

import lightning as L
import torch
import torch.distributed as dist

from tests.test_cache import digits_data, small_cnn
from unlearning.cache import TensorCache
from unlearning.fingerprint import weights_digest
from unlearning.methods.base import HoldWeights
from unlearning.methods.ssd import FixedAlpha, SSDCallback

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def main(cache_dir: str, out: str) -> None:
    data, model = digits_data(), small_cnn(0)
    callback = SSDCallback(FixedAlpha(1.0), importance_cache=TensorCache(cache_dir))
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=0, callbacks=[callback],
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(HoldWeights(model), datamodule=data)
    mine = {"weights": weights_digest(model), "cache_use": callback.cache_use, "rank": trainer.global_rank}
    everyone: list = [None] * trainer.world_size
    dist.all_gather_object(everyone, mine)
    if trainer.is_global_zero:
        with open(out, "w") as handle:
            json.dump(everyone, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
