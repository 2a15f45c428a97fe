"""Spatial encoder and decoder (``nowcast_pl.layers.conv``): shapes per number of layers."""

import pytest
import torch

from nowcast_pl.layers import SpatialDecoder, SpatialEncoder


@pytest.mark.parametrize(("num_layers", "factor"), [(1, 1), (2, 2), (3, 2), (4, 4)])
def test_spatial_encoder_decoder_shapes(num_layers, factor):
    encoder, decoder = SpatialEncoder(2, 8, num_layers), SpatialDecoder(8, 2, num_layers)
    latent, skip = encoder(torch.rand(3, 2, 16, 16))
    assert latent.shape == (3, 8, 16 // factor, 16 // factor)
    assert skip.shape == (3, 8, 16, 16)
    assert decoder(latent, skip).shape == (3, 2, 16, 16)
