"""Import of official checkpoints (``nowcast-convert raindiff|diffcast|stldm OFFICIAL OUT.ckpt``)."""

from nowcast_pl.convert.official import convert_state_dict, load_official_state_dict

__all__ = ["convert_state_dict", "load_official_state_dict"]
