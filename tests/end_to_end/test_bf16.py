"""``--trainer.precision bf16-mixed`` trains every tiny model on CPU, in one process, to finite weights."""

import pytest
import torch

from nowcast_pl.cli import build_cli
from tests.helpers.scaleout import SIMVP, TOY_DIFFUSION, case_params, final_checkpoint, load_checkpoint

CASES = case_params(SIMVP, TOY_DIFFUSION)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("case", CASES)
def test_bf16_mixed_trains_on_cpu(case, tmp_path):
    build_cli(["fit", *case.args(tmp_path), "--run_name", "bf16", "--trainer.precision", "bf16-mixed",
               "--trainer.max_steps", "2"])
    checkpoint = load_checkpoint(final_checkpoint(tmp_path / "runs/bf16"))
    assert checkpoint["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
