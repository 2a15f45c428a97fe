"""STLDM's memory layout choice (``conv_layout``) keeps values."""

import torch

from nowcast_pl.models.stldm.memory_layout import conv_layout


def test_conv_layout_by_map_size_keeps_values():
    big, tiny = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    assert conv_layout(big).is_contiguous(memory_format=torch.channels_last)
    assert not big.is_contiguous(memory_format=torch.channels_last)
    assert conv_layout(tiny).is_contiguous() and not tiny.is_contiguous()
    torch.testing.assert_close(conv_layout(big), big, atol=0, rtol=0)
    torch.testing.assert_close(conv_layout(tiny), tiny, atol=0, rtol=0)
    same = torch.randn(2, 8, 8, 8).contiguous(memory_format=torch.channels_last)
    assert conv_layout(same).data_ptr() == same.data_ptr()  # no copy when already in place
