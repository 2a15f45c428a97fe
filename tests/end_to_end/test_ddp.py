"""DDP on CPU (gloo) for every tiny model: replicas and their EMA stay identical, every parameter gets a gradient (no
``find_unused_parameters``), bf16-mixed trains, and two processes acting as two SLURM nodes train together
(``num_nodes=2``). Test scores over 2 processes equal single-process scores, counts included, with the seeded
ensembles of the toy diffusion task, on a test split of an odd number of windows, which a padding sampler would
score one window twice: the sharding, padding and metric sync are the task's, not the model's. That each shipped
model's members do not depend on the rest of the batch (what rank sharding needs of a model) is tested in-process by
each model's tests.

In-process DDP uses ``ddp_spawn`` (``ddp`` would re-run pytest's command line in the child process)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from nowcast_pl.cli import build_cli
from nowcast_pl.config import read_config
from tests.helpers.scaleout import (
    DISTINCT_TASKS,
    REPO,
    SIMVP,
    TOY_DIFFUSION,
    case_params,
    final_checkpoint,
    load_checkpoint,
)

pytestmark = [pytest.mark.multiprocess, pytest.mark.usefixtures("one_torch_thread")]


class ReplicaDump(Callback):
    """Test helper: each rank saves its parameters and their EMA at the start and end of fit, and the names of
    trainable parameters that got no gradient in any backward pass, to ``<folder>/rank<r>.pt``.

    Buffers are left out: BatchNorm running statistics are each rank's own (DDP broadcasts rank 0's before
    every forward, and checkpoints hold rank 0's), as in any DDP training without SyncBatchNorm.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.without_gradient: set[str] = set()
        self.initial: dict[str, torch.Tensor] = {}

    @staticmethod
    def _parameters(pl_module) -> dict[str, torch.Tensor]:
        names = {name for name, _ in pl_module.named_parameters()}
        tensors = {name: t.detach().clone() for name, t in pl_module.ema_tensors() if name in names}
        if pl_module.ema is not None:
            tensors |= {f"ema/{name}": t.clone() for name, t in pl_module.ema.shadows().items() if name in names}
        return tensors

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = self._parameters(pl_module)

    def on_after_backward(self, trainer, pl_module) -> None:
        self.without_gradient |= {name for name, p in pl_module.named_parameters()
                                  if p.requires_grad and p.grad is None}

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save({"tensors": self._parameters(pl_module), "initial": self.initial,
                    "without_gradient": sorted(self.without_gradient)},
                   Path(self.folder) / f"rank{trainer.global_rank}.pt")


def _callbacks_yaml(folder: Path) -> Path:
    path = folder / "dump.yaml"
    path.write_text(json.dumps({"trainer": {"callbacks": [
        {"class_path": f"{__name__}.ReplicaDump", "init_args": {"folder": str(folder)}}]}}))
    return path


def _fit_on_two_ranks(case, tmp_path) -> list[str]:
    """Fit ``case`` for 4 steps on 2 ddp_spawn ranks, check the replicas, return the case's arguments."""
    args = [*case.args(tmp_path), "--trainer.max_steps", "4"]
    build_cli(["fit", *args, "--run_name", "ddp", "--trainer.devices", "2", "--trainer.strategy", "ddp_spawn",
               "--config", str(_callbacks_yaml(tmp_path))])
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["without_gradient"] == ranks[1]["without_gradient"] == []
    assert ranks[0]["tensors"].keys() == ranks[1]["tensors"].keys()
    for name, tensor in ranks[0]["tensors"].items():
        assert torch.equal(tensor, ranks[1]["tensors"][name]), name  # bit-identical replicas (and EMA)
    weights = [name for name in ranks[0]["initial"] if name.endswith("weight") and not name.startswith("ema/")]
    changed = [name for name in weights if not torch.equal(ranks[0]["tensors"][name], ranks[0]["initial"][name])]
    assert len(changed) >= 0.9 * len(weights)  # trained (a few layers start with zero gradients)
    return args


@pytest.mark.parametrize("case", case_params(SIMVP, shipped=DISTINCT_TASKS))
def test_ddp_replicas_stay_identical(case, tmp_path):
    _fit_on_two_ranks(case, tmp_path)


def test_ddp_replicas_stay_identical_and_test_scores_match_one_process(tmp_path):
    args = _fit_on_two_ranks(TOY_DIFFUSION, tmp_path)
    data = read_config([], args, build=("data",)).datamodule
    data.setup("test")
    assert len(data.datasets["test"]) % 2 == 1  # 2 ranks: one scores a window more, none twice
    checkpoint = str(final_checkpoint(tmp_path / "runs/ddp"))
    scores = {}
    # The whole test split: limit_test_batches counts batches per rank, so a limit scores other windows on 2.
    for name, devices in (("one", ["--trainer.devices", "1"]),
                          ("two", ["--trainer.devices", "2", "--trainer.strategy", "ddp_spawn"])):
        build_cli(["test", *args, *devices, "--run_name", name, "--ckpt_path", checkpoint,
                   "--trainer.limit_test_batches", "1.0"])
        scores[name] = json.loads((tmp_path / "runs" / name / "test_metrics.json").read_text())
    assert scores["one"].keys() == scores["two"].keys() and len(scores["one"]) > 5
    for key, value in scores["one"].items():  # every score and every pixel count
        assert scores["two"][key] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_as_two_slurm_nodes_train_together(tmp_path):
    """The multi-node path: each process sees the SLURM variables of one task on its own node."""
    args = [*SIMVP.args(tmp_path), "--run_name", "nodes", "--trainer.num_nodes", "2", "--trainer.devices", "1",
            "--trainer.strategy", "ddp", "--trainer.max_epochs", "1"]
    port = str(_free_port())
    processes = []
    for node in (0, 1):
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", SLURM_NTASKS="2",
                   SLURM_NTASKS_PER_NODE="1", SLURM_JOB_NAME="nowcast", SLURM_JOB_ID="777", SLURM_PROCID=str(node),
                   SLURM_LOCALID="0", SLURM_NODEID=str(node), SLURM_NODELIST="127.0.0.1", SLURM_JOB_NUM_NODES="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        processes.append(subprocess.Popen([sys.executable, "-m", "nowcast_pl", "fit", *args], env=env, cwd=tmp_path,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=240)[0])
        finally:
            process.kill()
    assert [p.returncode for p in processes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    # 15 training windows over 2 ranks: 7 each, 3 batches of 2 per rank and epoch.
    assert load_checkpoint(final_checkpoint(tmp_path / "runs/nodes"))["global_step"] == 3
