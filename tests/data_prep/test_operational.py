"""Operational composites (FMI, BoM, KNMI, ODIM, MeteoSwiss), each format end to end against its pysteps importer."""

import datetime as dt

import numpy as np
import pytest
import zarr

from data_prep.composites import BomConverter, FmiConverter, KnmiConverter, MchConverter, OdimConverter
from data_prep.errors import UsageError
from data_prep.operational import pysteps_importer
from data_prep.runner import convert
from data_prep.units import rain_to_dbz
from nowcast_pl.data.store import RadarStore
from tests.helpers.archives.operational import (
    BOM_NAME,
    T0,
    bom_raw,
    fmi_dn,
    time_steps,
    write_bom_file,
    write_fmi_archive,
    write_knmi_file,
    write_mch_file,
    write_odim_file,
)


def _decoded_vs_importer(store, index, want):
    got = store.encoding.decode(store.read_raw(index, index + 1))[0].astype(np.float64)
    want = np.ma.filled(np.ma.asarray(want, dtype=np.float64), np.nan)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    return got[np.isfinite(got)], want[np.isfinite(want)]


def test_fmi_keeps_the_native_8_bit_encoding_exactly(tmp_path):
    written = write_fmi_archive(tmp_path / "raw", time_steps(T0, 6))
    summary = convert(FmiConverter(tmp_path / "raw"), tmp_path / "fmi.zarr", progress=False)
    store = RadarStore(tmp_path / "fmi.zarr")
    assert summary["store_frames"] == 6 and summary["report_entries"] == 0
    assert store.attrs["time_step_seconds"] == 300 and store.encoding.dtype == "uint8"
    np.testing.assert_array_equal(store.read_raw(0, 6), np.stack(list(written.values())))
    path = tmp_path / "raw" / T0.strftime("%Y%m%d/%Y%m%d%H%M_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz")
    got, want = _decoded_vs_importer(store, 0, pysteps_importer("fmi_pgm")(str(path), gzipped=True)[0])
    np.testing.assert_array_equal(got, want)
    assert store.attrs["pixel_size_m"] == pytest.approx(999.674053)


def test_fmi_refuses_to_dbz_conversion_of_reflectivity(tmp_path):
    write_fmi_archive(tmp_path, time_steps(T0, 2))
    with pytest.raises(UsageError, match="drop --to-dbz"):
        FmiConverter(tmp_path, to_dbz=True).spec()


def test_bom_keeps_the_file_encoding_times_and_coordinates(tmp_path):
    rng = np.random.default_rng(1)
    raws = [bom_raw(rng, (24, 20)) for _ in range(4)]
    times = time_steps(T0, 4, step_minutes=10)
    for time, raw in zip(times, raws, strict=True):
        write_bom_file(tmp_path / "raw" / time.strftime(BOM_NAME), raw, time)
    convert(BomConverter(tmp_path / "raw"), tmp_path / "bom.zarr", progress=False)
    store = RadarStore(tmp_path / "bom.zarr")
    assert (store.encoding.dtype, store.encoding.scale_factor, store.encoding.fill_value) == ("int16", 0.05, -1)
    np.testing.assert_array_equal(store.read_raw(0, 4), np.stack(raws))
    assert store.times[0] == np.datetime64(T0) and store.attrs["time_step_seconds"] == 600
    path = tmp_path / "raw" / T0.strftime(BOM_NAME)
    got, want = _decoded_vs_importer(store, 0, pysteps_importer("bom_rf3")(str(path))[0])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    fast, _ = BomConverter(tmp_path / "raw").read_field(path)
    np.testing.assert_array_equal(fast, np.ma.filled(pysteps_importer("bom_rf3")(str(path))[0], np.nan))
    x = zarr.open_group(str(tmp_path / "bom.zarr"), mode="r")["x"][:]
    np.testing.assert_allclose(x[[0, -1]], [-4750.0, 4750.0])


def test_knmi_accumulation_is_exact_and_converts_to_dbz(tmp_path):
    rng = np.random.default_rng(2)
    raws = [np.where(r < 0, 65535, r * 5).astype(np.uint16) for r in (bom_raw(rng, (20, 16)) for _ in range(3))]
    for time, raw in zip(time_steps(T0, 3), raws, strict=True):
        write_knmi_file(tmp_path / "raw" / time.strftime("%Y/%m/RAD_NL25_RAP_5min_%Y%m%d%H%M.h5"), raw)
    convert(KnmiConverter(tmp_path / "raw"), tmp_path / "mm.zarr", progress=False)
    np.testing.assert_array_equal(RadarStore(tmp_path / "mm.zarr").read_raw(0, 3), np.stack(raws))
    convert(KnmiConverter(tmp_path / "raw", to_dbz=True), tmp_path / "dbz.zarr", progress=False)
    store = RadarStore(tmp_path / "dbz.zarr")
    assert store.encoding.units == "dBZ" and "Z = 200 R^1.6" in store.encoding.comment
    mm = np.where(raws[0] == 65535, np.nan, raws[0] / 100.0)
    want = rain_to_dbz(mm, "mm", accutime_minutes=5, zr_a=200, zr_b=1.6, floor_dbz=-32.0)
    got = store.encoding.decode(store.read_raw(0, 1))[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.nanmax(np.abs(got - want)) <= 0.25


def test_odim_rate_is_quantised_to_half_the_scale(tmp_path):
    rng = np.random.default_rng(3)
    raws = [np.where(r < 0, 65535, r * 7).astype(np.uint16) for r in (bom_raw(rng, (20, 16)) for _ in range(3))]
    for time, raw in zip(time_steps(T0, 3), raws, strict=True):
        write_odim_file(
            tmp_path / "raw" / time.strftime("%Y%m%d/%Y%m%d%H%M00.rad.best.comp.rate.qpe.hdf"), raw, time, gain=0.007
        )
    convert(OdimConverter(tmp_path / "raw"), tmp_path / "odim.zarr", progress=False)
    store = RadarStore(tmp_path / "odim.zarr")
    assert store.encoding.units == "mm h-1" and store.encoding.quantity == "rain_rate"
    path = tmp_path / "raw" / T0.strftime("%Y%m%d/%Y%m%d%H%M00.rad.best.comp.rate.qpe.hdf")
    got, want = _decoded_vs_importer(store, 0, pysteps_importer("odim_hdf5")(str(path), qty="RATE")[0])
    assert np.abs(got - want).max() <= 0.005 + 1e-6


def test_mch_lookup_values_are_quantised_and_extremes_clipped_and_reported(tmp_path):
    rng = np.random.default_rng(4)
    dns = [fmi_dn(rng, (24, 30)) for _ in range(2)]
    dns[1][5, 5] = 250  # far beyond any real rain rate: ~19000 mm
    for time, dn in zip(time_steps(dt.datetime(2015, 5, 15, 12), 2), dns, strict=True):
        write_mch_file(tmp_path / "raw" / time.strftime("%Y%m%d/AQC%y%j%H%MV_00005.801.gif"), dn)
    summary = convert(MchConverter(tmp_path / "raw"), tmp_path / "mch.zarr", progress=False)
    assert summary["entries_by_action"] == {"note": 1}
    store = RadarStore(tmp_path / "mch.zarr")
    path = tmp_path / "raw/20150515/AQC151351200V_00005.801.gif"
    importer = pysteps_importer("mch_gif")
    got, want = _decoded_vs_importer(store, 0, importer(str(path), product="AQC", unit="mm", accutime=5)[0])
    assert np.abs(got - want).max() <= 0.005 + 1e-6
    assert store.encoding.decode(store.read_raw(1, 2))[0, 5, 5] == pytest.approx(655.34)


def test_odim_store_title_and_institution_come_from_what_source(tmp_path):
    rng = np.random.default_rng(3)
    for time in time_steps(T0, 2):
        raw = np.where((r := bom_raw(rng, (20, 16))) < 0, 65535, r * 7).astype(np.uint16)
        write_odim_file(tmp_path / "raw" / time.strftime("%Y%m%d/%Y%m%d%H%M00.rad.best.comp.rate.qpe.hdf"), raw,
                        time, source=b"ORG:215,CMT:Test composite")
    convert(OdimConverter(tmp_path / "raw"), tmp_path / "odim.zarr", progress=False)
    attrs = RadarStore(tmp_path / "odim.zarr").attrs
    assert attrs["title"] == "ODIM HDF5 radar composite, Test composite"
    assert attrs["institution"].startswith("originating centre 215") and "RMI" not in attrs["institution"]
