"""What train.py and unlearn.py do, as functions of a composed Hydra config."""
