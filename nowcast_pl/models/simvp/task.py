"""SimVP as a nowcasting task: a deterministic CNN trained with MSE (Gao et al., CVPR 2022).

Used on its own as the deterministic baseline, and as the mean predictor inside RainDiff (IncepU,
iterative 5→5 blocks) and the gSTA translator inside STLDM.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from nowcast_pl.models.simvp.network import SimVP
from nowcast_pl.tasks.base import Batch, NowcastTask


class SimVPTask(NowcastTask):
    """SimVP trained with a (masked) mean squared error in [0, 1] data units.

    Args:
        hid_S: channels of the spatial encoder/decoder.
        hid_T: channels of the translator.
        N_S: spatial encoder/decoder depth.
        N_T: translator depth.
        translator: ``"incepu"`` (SimVP v1, RainDiff) or ``"gsta"`` (SimVP v2, STLDM).
        rollout: ``"direct"`` (T_in → T_out at once) or ``"iterative"`` (T_in → T_in blocks, RainDiff).
        mlp_ratio: gSTA MLP expansion.
        drop_path: gSTA stochastic-depth rate.
        **kwargs: :class:`NowcastTask` arguments.
    """

    def __init__(
        self,
        *,
        hid_S: int = 64,
        hid_T: int = 256,
        N_S: int = 2,
        N_T: int = 6,
        translator: Literal["incepu", "gsta"] = "incepu",
        rollout: Literal["direct", "iterative"] = "direct",
        mlp_ratio: float = 8.0,
        drop_path: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        gsta_args = dict(mlp_ratio=mlp_ratio, drop_path=drop_path) if translator == "gsta" else {}
        self.net = SimVP(in_frames=self.in_frames, out_frames=self.out_frames, hid_S=hid_S, hid_T=hid_T,
                         N_S=N_S, N_T=N_T, translator=translator, rollout=rollout, **gsta_args)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.net(inputs)

    def forecast(self, inputs: Tensor) -> Tensor:
        return self.net(inputs)

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        prediction = self.net(batch["inputs"])
        mask = batch["target_mask"]
        squared = F.mse_loss(prediction.float(), batch["targets"], reduction="none")
        loss = (squared * mask).sum() / mask.sum().clamp_min(1)
        return {"loss": loss}
