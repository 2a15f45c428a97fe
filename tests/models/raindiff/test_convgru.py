"""RainDiff's ConvGRU cell follows the GRU equations."""

import torch

from nowcast_pl.models.raindiff.convgru import ConvGRUCell


def test_convgru_follows_the_gru_equations():
    torch.manual_seed(0)
    cell = ConvGRUCell(3, 4)
    x, h = torch.randn(2, 3, 5, 5), torch.randn(2, 4, 5, 5)
    r, z = torch.sigmoid(cell.gates(torch.cat([x, h], 1))).chunk(2, 1)
    c = torch.tanh(cell.candidate(torch.cat([x, r * h], 1)))
    assert torch.allclose(cell(x, h), (1 - z) * h + z * c, atol=1e-6)
    assert torch.equal(cell(x), cell(x, torch.zeros(2, 4, 5, 5)))
