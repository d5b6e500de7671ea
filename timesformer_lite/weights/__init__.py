"""Weights in and out: converters between our checkpoints and other codebases' formats."""

from .hf import config_from_hf, config_to_hf, state_dict_from_hf, state_dict_to_hf

__all__ = ["config_from_hf", "config_to_hf", "state_dict_from_hf", "state_dict_to_hf"]
