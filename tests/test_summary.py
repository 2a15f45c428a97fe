import json

import pytest

from nowcast_pl.summary import lowest_threshold_csi, main


def test_lowest_threshold_pixel_csi_ignores_pooled_and_per_lead_keys():
    scores = {"csi@20dBZ": 0.4, "csi@5dBZ/lead_01": 1.0, "csi@10dBZ": 0.5, "csi_pool4_s4@1dBZ": 0.9, "csi_m": 0.3}
    assert lowest_threshold_csi(scores) == ("csi@10dBZ", 0.5)
    with pytest.raises(ValueError, match="no 'csi@<threshold>'"):
        lowest_threshold_csi({"mse": 1.0})


@pytest.mark.parametrize(("model", "baseline", "status"), [(0.5, 0.3, 0), (0.3, 0.5, 1)])
def test_comparison_exit_status(tmp_path, capsys, model, baseline, status):
    for name, value in (("model", model), ("base", baseline)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "test_metrics.json").write_text(json.dumps({"csi@20dBZ": value}))
    assert main([str(tmp_path / "model"), str(tmp_path / "base")]) == status
    assert ("does NOT beat" in capsys.readouterr().out) == bool(status)


def test_a_single_run_prints_its_score(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "test_metrics.json").write_text(json.dumps({"csi@20dBZ": 0.4567, "csi@30dBZ": 0.2}))
    assert main([str(tmp_path / "model")]) == 0
    assert "model csi@20dBZ = 0.4567" in capsys.readouterr().out
