"""Units are parsed, not compared as text: every spelling a converter writes is accepted where it is used."""

import numpy as np
import pytest

from data_prep import cikm, hko7, meteonet
from data_prep.composites import OdimConverter
from data_prep.runner import convert
from data_prep.units import UNIT_ENCODINGS, encoding_for_unit, rain_to_dbz
from nowcast_pl.data.georef import ModelGrid
from nowcast_pl.data.store import RadarStore
from nowcast_pl.data.synthetic import SYNTHETIC_ENCODING
from nowcast_pl.data.units import conversion_factor, parse_units, quantity_of, same_units
from nowcast_pl.models.baselines import ExtrapolationTask, StepsTask
from nowcast_pl.models.baselines.rain_rate import from_rain_rate, to_rain_rate
from nowcast_pl.viz import radar_colormap
from tests.helpers.archives.operational import T0, bom_raw, time_steps, write_odim_file

# Every units attribute a converter of this project writes for a quantity the rain-rate baselines handle.
CONVERTER_UNITS = sorted({e["units"] for e in UNIT_ENCODINGS.values()} | {"mm"}  # + BoM's own encoding
                         | {m.ENCODING.units for m in (cikm, hko7, meteonet)} | {SYNTHETIC_ENCODING.units})
TASK_ARGS = {"in_frames": 4, "out_frames": 2, "value_range": (0.0, 100.0), "time_step_minutes": 10.0,
             "thresholds": [1.0]}


def test_the_converters_write_the_cf_spelling_of_rain_rate():
    assert CONVERTER_UNITS == ["dBZ", "mm", "mm h-1"]


@pytest.mark.parametrize("task", [ExtrapolationTask, StepsTask])
@pytest.mark.parametrize("units", CONVERTER_UNITS)
def test_every_converter_spelling_is_accepted_by_the_rain_rate_baselines(task, units):
    assert task(**TASK_ARGS, units=units).hparams.units == units


@pytest.mark.parametrize(("units", "value", "rate"), [
    ("mm h-1", 2.0, 2.0), ("mm/h", 2.0, 2.0), ("mm hr^-1", 2.0, 2.0), ("kg m-2 h-1", 2.0, 2.0),
    ("mm s-1", 2.0, 7200.0), ("mm", 0.5, 3.0), ("kg m-2", 0.5, 3.0), ("cm", 0.05, 3.0),
])
def test_rain_spellings_convert_to_the_same_rain_rate_and_back(units, value, rate):
    got = to_rain_rate(np.array([value]), units, 10.0)
    np.testing.assert_allclose(got, [rate])
    np.testing.assert_allclose(from_rain_rate(got, units, 10.0), [value])


@pytest.mark.parametrize("task", [ExtrapolationTask, StepsTask])
@pytest.mark.parametrize("units", ["K", "1", "m s-2"])
def test_a_wrong_unit_is_refused_in_one_line_naming_it_and_the_quantity(task, units):
    with pytest.raises(ValueError) as error:
        task(**TASK_ARGS, units=units)
    assert str(error.value) == (
        f"{task.__name__} converts the store's units to rain rate, but units={units!r} are not reflectivity "
        "(dBZ), a rain rate (e.g. mm h-1) or a rain accumulation over one time step (e.g. mm); convert the "
        "store to one of these")


def test_a_store_written_by_a_converter_in_mm_h_1_is_accepted_by_the_baselines(tmp_path):
    rng = np.random.default_rng(3)
    for time in time_steps(T0, 2):
        raw = np.where((r := bom_raw(rng, (20, 16))) < 0, 65535, r * 7).astype(np.uint16)
        write_odim_file(tmp_path / "raw" / time.strftime("%Y%m%d/%Y%m%d%H%M00.rad.best.comp.rate.qpe.hdf"), raw,
                        time, gain=0.007)
    convert(OdimConverter(tmp_path / "raw"), tmp_path / "odim.zarr", progress=False)
    units = RadarStore(tmp_path / "odim.zarr").encoding.units
    assert units == "mm h-1"
    for task in (ExtrapolationTask, StepsTask):
        task(**TASK_ARGS, units=units)


def test_unit_helpers_parse_cf_and_pysteps_spellings():
    assert same_units("mm h-1", "mm/h") and same_units("kg m-2", "mm") and not same_units("mm", "mm/h")
    assert quantity_of("mm h-1") == ("rain_rate", 1.0) and quantity_of("dBZ") == ("reflectivity", 1.0)
    assert conversion_factor("m", "mm") == pytest.approx(1000.0)
    with pytest.raises(ValueError, match=r"units 'mm' do not convert to 'dBZ'"):
        conversion_factor("mm", "dBZ")
    with pytest.raises(ValueError, match=r"units 'frobs' are not a unit pint can parse"):
        parse_units("frobs")


def test_converters_and_exporters_accept_any_spelling_of_their_units():
    assert encoding_for_unit("mm h-1", "x").units == "mm h-1"
    np.testing.assert_allclose(rain_to_dbz(np.array([1.0]), "mm h-1", accutime_minutes=5, zr_a=200, zr_b=1.6,
                                           floor_dbz=-32.0), [10 * np.log10(200)])
    grid = ModelGrid(y=np.array([1.0, 0.0]), x=np.array([0.0, 1.0]), projection="EPSG:3067", projected=True)
    assert grid.pysteps_metadata("mm h-1")["unit"] == "mm/h"
    assert grid.pysteps_metadata("kg m-2")["unit"] == "mm"
    assert radar_colormap("dBZ", 60.0)[1] is not None and radar_colormap("mm h-1", 60.0)[1] is None
