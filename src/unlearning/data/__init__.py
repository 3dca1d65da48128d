"""Datasets, forget/retain splits and the LightningDataModule that serves them."""

from unlearning.data.bundle import DatasetBundle
from unlearning.data.datamodule import UnlearningDataModule
from unlearning.data.splits import ForgetSplit

__all__ = ["DatasetBundle", "ForgetSplit", "UnlearningDataModule"]
