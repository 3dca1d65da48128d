"""Backbones (ResNet18 for small images, ViT from transformers) and the LightningModule."""
