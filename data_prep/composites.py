"""The operational composite formats: FMI, BoM, KNMI, MeteoSwiss and ODIM (sub-commands of ``nowcast-prep``).

Each class names its pysteps importer, the default file pattern (pystepsrc's ``path_fmt``/``fn_pattern``/
``fn_ext`` for the pysteps-data archive) and the data's terms. Encodings: see :mod:`data_prep.units`;
FMI, KNMI and BoM keep their own integer encodings exactly, MeteoSwiss and ODIM floats are quantised.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import h5py
import netCDF4
import numpy as np

from data_prep.operational import PYSTEPS_CITATION, OperationalConverter
from data_prep.units import encoding_for_unit
from nowcast_pl.data.schema import FrameEncoding
from nowcast_pl.data.units import same_units

_COMMON_HELP = """
Files are found under --src with the pattern PATH_FMT/FN_PATTERN.FN_EXT (strftime directives %Y %y %m %d %j
%H %M %S, glob wildcards ? and *, as in pysteps' pystepsrc); their times come from the names. Events are runs
of files on the time grid: a gap of up to --max-gap steps becomes missing frames, a longer one splits.
"""


class FmiConverter(OperationalConverter):
    name = "fmi"
    importer = "fmi_pgm"
    path_fmt = "%Y%m%d"
    fn_pattern = "%Y%m%d%H%M_fmi.radar.composite.lowest_FIN_SUOMI1"
    fn_ext = "pgm.gz"
    title = "FMI radar composite, lowest CAPPI corrected reflectivity"
    institution = "Finnish Meteorological Institute (FMI)"
    licence = "FMI open data, Creative Commons Attribution 4.0 (CC BY 4.0)"
    citation = f"Finnish Meteorological Institute radar composite; sample data as distributed by {PYSTEPS_CITATION}"
    layout_help = """FMI composite: gzip-compressed 8-bit PGM (P5) files with '# key value' header lines,
1226 x 760 px, ~1 km, polar stereographic, 5 min; dBZ = (DN - 64) / 2, 255 = no data (kept as is: uint8).
  SRC/20160928/201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz
  (pysteps-data: SRC = radar/fmi/pgm)""" + _COMMON_HELP

    def importer_kwargs(self) -> dict[str, Any]:
        return {"gzipped": self.pattern.pattern.endswith(".gz")}


class BomConverter(OperationalConverter):
    name = "bom"
    importer = "bom_rf3"
    path_fmt = "%Y/%m/%d"
    fn_pattern = "*_%Y%m%d_%H%M%S.prcp-*"
    fn_ext = "nc"
    title = "BoM Rainfields 3 radar precipitation accumulation"
    institution = "Commonwealth of Australia, Bureau of Meteorology (BoM)"
    licence = "(c) Commonwealth of Australia, Bureau of Meteorology; http://www.bom.gov.au/other/copyright.shtml"
    citation = f"Bureau of Meteorology Rainfields 3; sample data as distributed by {PYSTEPS_CITATION}"
    layout_help = """BoM Rainfields 3: one CF netCDF per time step and radar, variable 'precipitation' (int16,
scale_factor, _FillValue) = accumulation (mm) ending at valid_time, x/y in km, 'proj' grid mapping; 512 x 512
px, 0.5 km; 6 min (prcp-cscn) or 10 min (prcp-c10). Convert one radar per store; the file's own integer
encoding is kept.
  SRC/2020/10/31/66_20201031_001000.prcp-c10.nc
  (pysteps-data: SRC = radar/bom/prcp-c10/66)""" + _COMMON_HELP

    def read_field(self, path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
        """The same field as ``import_bom_rf3`` (CF mask and scale, NaN where masked), read faster.

        pysteps' importer also rebuilds the geodata of every file by iterating over the x/y variables
        element by element (timed in docs/datasets.md); the grid is read once, in :meth:`spec`, through the
        importer.
        """
        with netCDF4.Dataset(path) as ds:
            var = ds.variables["precipitation"]
            if not same_units(getattr(var, "units", ""), "mm"):
                raise ValueError(f"'precipitation' has units {getattr(var, 'units', None)!r}, expected kg m-2")
            values = np.ma.filled(np.ma.asarray(var[:], dtype=np.float64), np.nan)
            accutime = (int(ds.variables["valid_time"][:]) - int(ds.variables["start_time"][:])) / 60.0
        return values, {"unit": "mm", "accutime": accutime}

    def native_encoding(self, meta: dict[str, Any], first: Path) -> FrameEncoding:
        """The first file's own integer encoding of 'precipitation' (exact round trip)."""
        with netCDF4.Dataset(first) as ds:
            var = ds.variables["precipitation"]
            dtype, attrs = str(var.dtype), {k: var.getncattr(k) for k in var.ncattrs()}
        minutes = f"{meta['accutime']:g} min" if meta.get("accutime") else "one time step"
        if dtype not in ("int16", "int32", "uint16") or "_FillValue" not in attrs:
            return encoding_for_unit("mm", self.title)
        return FrameEncoding(
            dtype=dtype, units="mm", quantity="rain_accumulation", long_name=self.title,
            fill_value=int(attrs["_FillValue"]), scale_factor=float(attrs.get("scale_factor", 1.0)),
            add_offset=float(attrs.get("add_offset", 0.0)),
            comment=f"BoM's own encoding; accumulation over {minutes} ending at the frame time",
        )

    def grid_coords(self, meta: dict[str, Any], shape: tuple[int, int], first: Path) -> dict[str, np.ndarray]:
        """The file's own x/y pixel centres (km → m)."""
        with netCDF4.Dataset(first) as ds:
            scale = {"km": 1000.0, "m": 1.0}[getattr(ds.variables["x"], "units", "m")]
            return {"y": np.asarray(ds.variables["y"][:], dtype=np.float64) * scale,
                    "x": np.asarray(ds.variables["x"][:], dtype=np.float64) * scale}


class KnmiConverter(OperationalConverter):
    name = "knmi"
    importer = "knmi_hdf5"
    path_fmt = "%Y/%m"
    fn_pattern = "RAD_NL25_RAP_5min_%Y%m%d%H%M"
    fn_ext = "h5"
    title = "KNMI radar composite"
    institution = "Royal Netherlands Meteorological Institute (KNMI)"
    licence = "KNMI open data, Creative Commons Attribution 4.0 (CC BY 4.0)"
    citation = f"KNMI radar precipitation composite (KNMI Data Platform); see also {PYSTEPS_CITATION}"
    layout_help = """KNMI: HDF5 files (KNMI format: image1/image_data uint16, 'geographic' group), 765 x 700 px,
1 km, 5 min; --qty ACRR = accumulation in 0.01 mm (kept exactly), DBZH = DN/2 - 32 dBZ.
  SRC/2010/08/RAD_NL25_RAP_5min_201008260000.h5
  (pysteps-data: SRC = radar/KNMI)""" + _COMMON_HELP

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--qty", choices=("ACRR", "DBZH"), default="ACRR", help="quantity (default ACRR)")
        parser.add_argument("--accutime", type=float, default=5.0, help="accumulation minutes (default 5)")

    def importer_kwargs(self) -> dict[str, Any]:
        return {"qty": self.options.get("qty", "ACRR"), "accutime": self.options.get("accutime", 5.0)}


class MchConverter(OperationalConverter):
    name = "mch"
    importer = "mch_gif"
    path_fmt = "%Y%m%d"
    fn_pattern = "AQC%y%j%H%M?_00005.801"
    fn_ext = "gif"
    title = "MeteoSwiss radar precipitation composite"
    institution = "Federal Office of Meteorology and Climatology MeteoSwiss"
    licence = "MeteoSwiss terms of use (check the provider's current open-data terms before redistribution)"
    citation = f"MeteoSwiss radar composite; sample data as distributed by {PYSTEPS_CITATION}"
    units = {"AQC": "mm", "CPC": "mm", "AZC": "mm", "RZC": "mm/h"}
    layout_help = """MeteoSwiss: 8-bit palette GIF per time step (no georeferencing; Swiss grid CCS4, 640 x 710
px, 1 km), 5 min. AQC/CPC/AZC give mm per --accutime minutes, RZC mm/h (pysteps' look-up tables); the values
are stored as 0.01 mm (mm/h) in uint16. Set --fn-pattern for products other than AQC.
  SRC/20150515/AQC151351200V_00005.801.gif   (the '?' in the pattern matches the version letter)
  (pysteps-data: SRC = radar/mch)""" + _COMMON_HELP

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--product", choices=tuple(cls.units), default="AQC", help="product (default AQC)")
        parser.add_argument("--accutime", type=float, default=5.0, help="accumulation minutes (default 5)")

    def importer_kwargs(self) -> dict[str, Any]:
        product = self.options.get("product", "AQC")
        return {"product": product, "unit": self.units[product], "accutime": self.options.get("accutime", 5.0)}


class OdimConverter(OperationalConverter):
    name = "odim"
    importer = "odim_hdf5"
    path_fmt = "%Y%m%d"
    fn_pattern = "%Y%m%d%H%M00.rad.best.comp.rate.qpe"
    fn_ext = "hdf"
    title = "ODIM HDF5 radar composite"
    institution = "ODIM_H5 composite producer (default pattern: RMI radqpe)"
    licence = "producer's terms; the RMI sample in pysteps-data is for non-commercial use with citation"
    citation = f"Royal Meteorological Institute of Belgium (RMI) radar QPE; see also {PYSTEPS_CITATION}"
    layout_help = """ODIM_H5 composites (OPERA, RMI, DPC ...): dataset1/data1/data with what/quantity, gain,
offset, nodata, undetect; 'where' with projdef and corners. --qty RATE (mm/h), ACRR (mm) or DBZH (dBZ);
pass --accutime (pysteps' default is 15 min, OPERA's step). Set --licence/--citation for your producer.
  SRC/20210704/20210704165000.rad.best.comp.rate.qpe.hdf
  (pysteps-data: SRC = radar/rmi/radqpe)""" + _COMMON_HELP

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--qty", choices=("RATE", "ACRR", "DBZH"), default="RATE", help="default RATE")
        parser.add_argument("--accutime", type=float, default=5.0, help="accumulation minutes (default 5)")

    def importer_kwargs(self) -> dict[str, Any]:
        return {"qty": self.options.get("qty", "RATE"), "accutime": self.options.get("accutime", 5.0)}

    def producer(self, first: Path) -> tuple[str, str]:
        """Title and institution from the file's ``what/source`` (ODIM_H5 §3.1: ``ORG:``, ``NOD:``, ``PLC:``,
        ``CMT:`` ... identifiers), so another producer's store is not labelled with the default's (RMI)."""
        source = odim_source(first)
        if not source:
            return self.title, self.institution
        fields = dict(item.split(":", 1) for item in source.split(",") if ":" in item)
        name = next((fields[k] for k in ("PLC", "CMT", "NOD", "RAD", "ORG", "WMO") if fields.get(k)), source)
        institution = f"originating centre {fields['ORG']}" if fields.get("ORG") else f"producer {name}"
        return f"ODIM HDF5 radar composite, {name}", f"{institution} (ODIM what/source {source!r})"


def odim_source(path: Path) -> str:
    """The ``what/source`` attribute of an ODIM_H5 file, "" when absent."""
    with h5py.File(path, "r") as h5:
        value = h5["what"].attrs.get("source", b"") if "what" in h5 else b""
    return (value.decode() if isinstance(value, bytes) else str(value)).strip()
