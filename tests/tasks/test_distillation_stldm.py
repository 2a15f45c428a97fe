"""Guidance distillation of STLDM (Meng et al. 2023): the first stage's teacher is the classifier-free guided model,
so the student samples the guided forecast with one U-Net call per step; a guided run-time setting is refused."""

import pytest
import torch

from nowcast_pl.models.stldm.task import STLDMTask
from nowcast_pl.tasks.distillation import RECORD
from tests.helpers.stldm import TINY, tiny_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    task = STLDMTask(in_frames=3, out_frames=4, **TINY)
    path = tmp_path_factory.mktemp("stldm") / "teacher.ckpt"
    torch.save({"state_dict": task.state_dict(), "global_step": 10,
                "hyper_parameters": {"_class_path": "nowcast_pl.models.stldm.STLDMTask"}}, path)
    return path


def _student(teacher, **settings):
    return STLDMTask(in_frames=3, out_frames=4, **TINY | {"guidance_scale": 0.0, "sampling_steps": 2} | settings,
                     teacher_checkpoint=str(teacher), distill_teacher_steps=4, distill_student_steps=2,
                     distill_stage_steps=1, teacher_guidance_scale=1.0)


def test_a_guided_stage_lowers_the_distance_to_the_guided_teacher(teacher):
    task = _student(teacher)
    task.distillation.initialise(task)
    task.configure_model()
    task.eval()
    inputs, targets = tiny_batch()
    batch = {"inputs": inputs, "targets": targets}

    def distance():
        torch.manual_seed(1)
        with torch.no_grad():
            return float(task.distillation.loss(task, batch, global_step=0)["loss"])

    before = distance()
    task.distillation.settings.teacher_guidance_scale = 0.0
    assert before > 1.05 * distance()  # the guided teacher's steps are farther from the (unguided) student's
    task.distillation.settings.teacher_guidance_scale = 1.0
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-4)
    for _ in range(6):
        optimizer.zero_grad()
        task.distillation.loss(task, batch, global_step=0)["loss"].backward()
        optimizer.step()
    assert distance() < 0.9 * before  # 0.83 measured


def test_a_student_with_folded_guidance_refuses_a_guided_run(teacher):
    task = _student(teacher)
    task.distillation.initialise(task)
    checkpoint = {"state_dict": task.state_dict(), "global_step": 2}
    task.on_save_checkpoint(checkpoint)
    assert checkpoint[RECORD]["reached_steps"] == 2 and checkpoint[RECORD]["teacher_guidance_scale"] == 1.0
    evaluated = STLDMTask(in_frames=3, out_frames=4, **TINY | {"sampling_steps": 2})  # paper default w = 1
    with pytest.raises(ValueError, match=r"^this STLDMTask student has guidance w=1 folded in \(one call per step\); "
                                         r"set guidance_scale to 0 \(--guidance-scale in nowcast forecast; "
                                         r"--model.init_args.guidance_scale in nowcast test and predict\)$"):
        evaluated.on_load_checkpoint(checkpoint)
    plain = STLDMTask(in_frames=3, out_frames=4, **TINY | {"sampling_steps": 2, "guidance_scale": 0.0})
    plain.on_load_checkpoint(checkpoint)
    plain.load_state_dict(checkpoint["state_dict"])
    calls = []
    plain.net.unet.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        plain.sample_members(tiny_batch(1)[0], 1)
    assert len(calls) == 2  # two steps, one U-Net call each
