"""``limit_*_batches: 1`` is one batch, not the whole split, from YAML and from the command line."""

import pytest
import yaml
from lightning.pytorch.callbacks import Callback

from nowcast_pl.cli import build_cli
from tests.helpers.cli import write_config


class CountBatches(Callback):
    """Test helper: count the validation and test batches actually run."""

    def __init__(self) -> None:
        self.val = self.test = 0

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        self.val += 1

    def on_test_batch_end(self, *args, **kwargs) -> None:
        self.test += 1


def _counter(cli) -> CountBatches:
    return next(c for c in cli.trainer.callbacks if isinstance(c, CountBatches))


def test_integer_limits_from_yaml_and_command_line_run_one_batch(tmp_path, store):
    # tests/helpers/cli.py splits: 5 validation windows (3 batches of 2), 9 test windows (5 batches of 2).
    cfg = write_config(tmp_path / "c.yaml", store, trainer={
        "limit_val_batches": 1, "num_sanity_val_steps": 0,
        "callbacks": [{"class_path": f"{__name__}.CountBatches"}]})
    common = ["--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "r",
              "--data.init_args.eval_batch_size", "2"]
    fit = build_cli(["fit", *common])
    assert fit.trainer.limit_val_batches == 1 and isinstance(fit.trainer.limit_val_batches, int)
    assert _counter(fit).val == 1
    test = build_cli(["test", *common, "--trainer.limit_test_batches", "1", "--ckpt_path", "last"])
    assert test.trainer.limit_test_batches == 1 and _counter(test).test == 1
    whole = build_cli(["test", *common, "--trainer.limit_test_batches", "1.0", "--ckpt_path", "last"])
    assert _counter(whole).test == 5  # 9 test windows in batches of 2


def test_print_config_keeps_integer_limits(tmp_path, store, capsys):
    cfg = write_config(tmp_path / "c.yaml", store, trainer={"limit_val_batches": 1})
    with pytest.raises(SystemExit):
        build_cli(["fit", "--config", str(cfg), "--trainer.limit_test_batches", "2", "--trainer.limit_train_batches",
                   "0.5", "--trainer.overfit_batches", "3", "--print_config"])
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    assert (trainer["limit_val_batches"], trainer["limit_test_batches"]) == (1, 2)
    assert isinstance(trainer["limit_val_batches"], int) and trainer["limit_train_batches"] == 0.5
    assert trainer["overfit_batches"] == 3 and isinstance(trainer["overfit_batches"], int)
