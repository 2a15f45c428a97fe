"""STLDM's network at the paper sizes (instantiation only): the released parameter counts."""

import pytest

from nowcast_pl.models.stldm.network import STLDM

OFFICIAL_PARAMS = {(5, 20): 80_980_769, (13, 12): 83_843_105}


DEAD_CONDITION_CONV = 2_097_664


@pytest.mark.parametrize("frames", sorted(OFFICIAL_PARAMS))
def test_paper_parameter_counts_are_the_released_ones_without_the_dead_condition_conv(frames):
    model = STLDM(in_frames=frames[0], out_frames=frames[1])
    count = sum(p.numel() for p in model.parameters())
    assert count == OFFICIAL_PARAMS[frames] - DEAD_CONDITION_CONV
    assert abs(count / OFFICIAL_PARAMS[frames] - 1) < 0.03
    assert sum(p.numel() for p in model.translator.parameters()) == {5: 38_606_432, 13: 41_468_768}[frames[0]]
