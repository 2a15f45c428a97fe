"""Import of official checkpoints (``nowcast-convert``)."""

from nowcast_pl.convert.official import convert_state_dict, load_official_state_dict

__all__ = ["convert_state_dict", "load_official_state_dict"]
