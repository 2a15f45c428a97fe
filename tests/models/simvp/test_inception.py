"""IncepU translator (``nowcast_pl.models.simvp.inception``)."""

import torch

from nowcast_pl.models.simvp.inception import IncepUTranslator


def test_incepu_translator_supports_different_in_and_out_widths():
    translator = IncepUTranslator(24, 16, 40, depth=3)
    assert translator(torch.rand(2, 24, 8, 8)).shape == (2, 40, 8, 8)
