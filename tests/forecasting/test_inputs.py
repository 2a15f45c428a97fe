"""Observed frames of ``nowcast forecast``: raw files and stores checked against the model, on generated grids."""

import datetime as dt

import netCDF4
import numpy as np
import pytest

from data_prep.errors import UsageError
from data_prep.units import dbz_to_rain, rain_to_dbz
from nowcast_pl.forecasting.inputs import InputError, ModelInputs
from nowcast_pl.forecasting.raw_inputs import read_raw_inputs
from nowcast_pl.forecasting.store_inputs import read_store_inputs
from tests.helpers.archives.operational import (
    BOM_NAME,
    FMI_PATTERN,
    bom_raw,
    fmi_dn,
    time_steps,
    truncate,
    write_bom_file,
    write_fmi_archive,
    write_fmi_file,
)
from tests.helpers.stores import write_moving_store

T0 = dt.datetime(2021, 7, 4, 12, 0)
DBZ_MODEL = ModelInputs(in_frames=3, out_frames=2, step_seconds=300, units="dBZ", thresholds=(20.0,),
                        value_range=(-10.0, 60.0))
RAIN_MODEL = ModelInputs(in_frames=3, out_frames=2, step_seconds=600, units="mm h-1", thresholds=(1.0,),
                         value_range=(0.0, 50.0))


def fmi_files(root, times, shape=(24, 20)):
    written = write_fmi_archive(root, times, shape)
    return [root / t.strftime(FMI_PATTERN) for t in times], written


def bom_files(root, times, radar=66):
    rng = np.random.default_rng(1)
    return [write_bom_file(root / t.strftime(BOM_NAME.replace("66_", f"{radar}_")), bom_raw(rng, (16, 16)), t)
            for t in times]


def test_newest_frames_of_an_archive_folder_read_as_nowcast_prep_reads_them(tmp_path):
    times = time_steps(T0, 5)
    _, written = fmi_files(tmp_path, times)
    observed = read_raw_inputs("fmi", [tmp_path], {}, DBZ_MODEL)
    assert observed.times.tolist() == [np.datetime64(t, "s") for t in times[-3:]]
    expected = (written[times[-1]].astype(np.float32) - 64) / 2
    expected[written[times[-1]] == 255] = np.nan
    expected[written[times[-1]] == 0] = -32.0
    np.testing.assert_array_equal(observed.values[-1], expected)
    assert observed.grid.georeferenced and "+proj=stere" in observed.grid.projection
    assert observed.files[-1].endswith(times[-1].strftime("%Y%m%d%H%M_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"))
    assert "Finnish" in observed.attrs["institution"]


def test_explicit_time_picks_the_frames_ending_there(tmp_path):
    files, _ = fmi_files(tmp_path, time_steps(T0, 5))
    observed = read_raw_inputs("fmi", files, {}, DBZ_MODEL, time=T0 + dt.timedelta(minutes=10))
    assert observed.init_time == np.datetime64(T0 + dt.timedelta(minutes=10), "s")
    with pytest.raises(InputError, match=r"--time 2021-07-04 13:00: no input file for that time \(the files run"):
        read_raw_inputs("fmi", files, {}, DBZ_MODEL, time=T0 + dt.timedelta(hours=1))


def test_time_step_other_than_the_models_is_refused(tmp_path):
    files, _ = fmi_files(tmp_path, time_steps(T0, 4, step_minutes=10))
    with pytest.raises(InputError, match=r"pgm.gz: the input files are 10 min apart, the model's time step is 5 min; "
                                         "give files 5 min apart"):
        read_raw_inputs("fmi", files, {}, DBZ_MODEL)
    with pytest.raises(InputError, match="--timestep 10 min differs from the model's 5 min"):
        read_raw_inputs("fmi", files, {"timestep": 10.0}, DBZ_MODEL)


def test_missing_frame_is_refused(tmp_path):
    times = time_steps(T0, 5)
    files, _ = fmi_files(tmp_path, times[:3] + times[4:])
    with pytest.raises(InputError, match="missing frame 2021-07-04 12:15 UTC: the model needs 3 consecutive frames 5 "
                                         "min apart ending at 2021-07-04 12:20; add that file or pass an earlier"):
        read_raw_inputs("fmi", files, {}, DBZ_MODEL)


def test_duplicated_frame_is_refused(tmp_path):
    times = time_steps(T0, 3, step_minutes=10)
    files = bom_files(tmp_path / "a", times) + bom_files(tmp_path / "b", times[-1:], radar=67)
    with pytest.raises(InputError, match=r"67_20210704_122000.prcp-c10.nc: same time 2021-07-04 12:20 as .*66_2021"
                                         "0704_122000.prcp-c10.nc; give one file per time"):
        read_raw_inputs("bom", files, {}, _mm(RAIN_MODEL))


def _mm(model):
    return ModelInputs(**{**model.__dict__, "units": "mm"})


def test_another_grid_between_frames_is_refused(tmp_path):
    times = time_steps(T0, 3)
    files, _ = fmi_files(tmp_path / "a", times[:2])
    files.append(write_fmi_file(tmp_path / "b" / times[2].strftime(FMI_PATTERN),
                                fmi_dn(np.random.default_rng(0), (30, 20)), times[2]))
    with pytest.raises(InputError, match=r"b/.*1210_fmi.*pgm.gz: grid \(30, 20\) differs from the archive's "
                                         r"\(24, 20\); give frames of one radar product on one grid"):
        read_raw_inputs("fmi", files, {}, DBZ_MODEL)
    # Same shape, shifted grid: another radar's coordinates.
    bom = bom_files(tmp_path / "c", time_steps(T0, 3, step_minutes=10))
    with netCDF4.Dataset(bom[1], "a") as ds:
        ds["x"][:] = ds["x"][:] + 1.0
    with pytest.raises(InputError, match=r"66_20210704_121000.prcp-c10.nc: its grid \(pixel coordinates\) differs from "
                                         "that of .*66_20210704_120000"):
        read_raw_inputs("bom", bom, {}, _mm(RAIN_MODEL))


def test_unreadable_file_and_wrong_name_are_refused_naming_the_file(tmp_path):
    files, _ = fmi_files(tmp_path, time_steps(T0, 3))
    truncate(files[1])
    with pytest.raises(InputError, match=rf"{files[1]}: unreadable .*; replace the file"):
        read_raw_inputs("fmi", files, {}, DBZ_MODEL)
    odd = files[0].with_name("radar.pgm.gz")
    files[0].rename(odd)
    with pytest.raises(InputError, match=r"radar.pgm.gz: the name does not match the fmi file pattern "
                                         r"'%Y%m%d%H%M_fmi.*'.*pass --fn-pattern/--fn-ext"):
        read_raw_inputs("fmi", [odd, *files[1:]], {}, DBZ_MODEL)
    with pytest.raises(UsageError, match="--source sevir: its archives hold events, not one file per time"):
        read_raw_inputs("sevir", files, {}, DBZ_MODEL)
    with pytest.raises(UsageError, match="unknown source 'fmy'"):
        read_raw_inputs("fmy", files, {}, DBZ_MODEL)


def test_values_in_another_unit_are_refused_unless_converted(tmp_path):
    bom = bom_files(tmp_path, time_steps(T0, 3, step_minutes=5))
    with pytest.raises(InputError, match=r"66_20210704_120000.prcp-c10.nc: holds 'mm', the model takes 'dBZ'; add "
                                         "--to-dbz to convert rain to reflectivity"):
        read_raw_inputs("bom", bom, {}, DBZ_MODEL)
    converted = read_raw_inputs("bom", bom, {"to_dbz": True, "zr_a": 300.0, "zr_b": 1.4}, DBZ_MODEL)
    assert converted.attrs["input_conversion"].startswith("converted from mm with Z = 300 R^1.4")
    mm = read_raw_inputs("bom", bom, {}, _mm(DBZ_MODEL)).values[-1]
    expected = rain_to_dbz(mm, "mm", accutime_minutes=10.0, zr_a=300.0, zr_b=1.4, floor_dbz=-32.0)
    np.testing.assert_allclose(converted.values[-1], expected, atol=0.25 + 1e-6)  # 0.5 dBZ encoding

    fmi, _ = fmi_files(tmp_path / "fmi", time_steps(T0, 3, step_minutes=10))
    with pytest.raises(InputError, match="holds 'dBZ', the model takes 'mm h-1'; add --to-rain"):
        read_raw_inputs("fmi", fmi, {}, RAIN_MODEL)
    rain = read_raw_inputs("fmi", fmi, {}, RAIN_MODEL, to_rain=True)
    dbz = read_raw_inputs("fmi", fmi, {}, ModelInputs(**{**RAIN_MODEL.__dict__, "units": "dBZ"})).values
    np.testing.assert_allclose(rain.values, (10 ** (dbz / 10) / 200.0) ** (1 / 1.6), rtol=1e-5)
    assert rain.attrs["input_conversion"] == "converted from dBZ to mm h-1 with Z = 200 R^1.6 (R in mm/h)"


def test_dbz_to_rain_inverts_rain_to_dbz():
    rate = np.array([[0.5, 2.0], [10.0, np.nan]])
    dbz = rain_to_dbz(rate, "mm/h", accutime_minutes=5.0, zr_a=200.0, zr_b=1.6, floor_dbz=-32.0)
    np.testing.assert_allclose(dbz_to_rain(dbz, "mm/h", accutime_minutes=5.0, zr_a=200.0, zr_b=1.6), rate)
    np.testing.assert_allclose(dbz_to_rain(dbz, "mm", accutime_minutes=6.0, zr_a=200.0, zr_b=1.6), rate / 10)


def test_store_frames_at_a_time_and_their_refusals(tmp_path):
    store = write_moving_store(tmp_path / "s.zarr", n_events=2, frames=6, missing={1: [2]})
    observed = read_store_inputs(store, DBZ_MODEL, time=dt.datetime(2020, 1, 1, 0, 20))
    assert observed.values.shape == (3, 16, 16) and observed.init_time == np.datetime64("2020-01-01T00:20")
    assert not observed.grid.projected and observed.grid.x[0] == 500.0
    with pytest.raises(InputError, match=r"frame 2020-01-02T00:10:00 is missing \(frame_valid false\)"):
        read_store_inputs(store, DBZ_MODEL, time=dt.datetime(2020, 1, 2, 0, 15))
    with pytest.raises(InputError, match="fewer than 3 consecutive frames end at 2020-01-02T00:05:00"):
        read_store_inputs(store, DBZ_MODEL, time=dt.datetime(2020, 1, 2, 0, 5))
    with pytest.raises(InputError, match="no frame at 2020-03-01 00:00:00 UTC"):
        read_store_inputs(store, DBZ_MODEL, time=dt.datetime(2020, 3, 1))
    with pytest.raises(InputError, match="frames are 5 min apart, the model's time step is 10 min"):
        read_store_inputs(store, RAIN_MODEL)
    with pytest.raises(InputError, match="add --to-rain"):
        read_store_inputs(store, ModelInputs(**{**DBZ_MODEL.__dict__, "units": "mm h-1"}))
