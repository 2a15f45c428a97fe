"""Find archive files by a strftime-style time pattern with glob wildcards.

A pattern is a path relative to the archive root, in the style of pystepsrc's ``path_fmt`` + ``fn_pattern``
+ ``fn_ext``, e.g. ``"%Y%m%d/%Y%m%d%H%M_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"``. It may contain the
directives ``%Y %y %m %d %j %H %M %S`` (fixed-width, zero-padded numbers), the glob wildcards ``?`` (one
character) and ``*`` (any run of characters within one path component), and literal text. The time of a file
is parsed from its path; a directive that appears twice (a date folder and a file name) must agree.
"""

from __future__ import annotations

import datetime as dt
import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

_WIDTH = {"Y": 4, "y": 2, "m": 2, "d": 2, "j": 3, "H": 2, "M": 2, "S": 2}
_TOKEN = re.compile(r"%(.)|([?*])|([^%?*]+)")


def _year(fields: dict[str, int]) -> int:
    """%Y, or %y read as 1969–2068 like :func:`time.strptime`."""
    if "Y" in fields:
        return fields["Y"]
    return fields["y"] + (2000 if fields["y"] < 69 else 1900)


@dataclass(frozen=True)
class Match:
    """One discovered file: its path and the time parsed from it (naive UTC)."""

    path: Path
    time: dt.datetime


@dataclass(frozen=True)
class Discovery:
    """Result of :meth:`TimePattern.discover`.

    Args:
        matches: files whose path gives a valid time, in sorted path order.
        rejected: ``(path, reason)`` of files that match the glob but not a valid, consistent time.
    """

    matches: list[Match] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class TimePattern:
    """A compiled time pattern.

    Args:
        pattern: ``/``-separated relative path pattern (see the module docstring).

    Raises:
        ValueError: on an unsupported directive, or when the pattern cannot give a full date.
    """

    pattern: str

    def __post_init__(self) -> None:
        if not self.pattern or self.pattern.startswith("/"):
            raise ValueError(f"time pattern {self.pattern!r} must be a non-empty path relative to --src")
        keys = set()
        for directive, _, _ in _TOKEN.findall(self.pattern):
            if directive and directive not in _WIDTH:
                raise ValueError(
                    f"time pattern {self.pattern!r}: unsupported directive %{directive}; "
                    f"use only {' '.join('%' + k for k in _WIDTH)}, '?' and '*'"
                )
            keys.add(directive)
        if not ({"Y", "y"} & keys) or not ({"m", "d"} <= keys or "j" in keys):
            raise ValueError(
                f"time pattern {self.pattern!r} must contain a year (%Y or %y) and a date (%m and %d, or %j)"
            )

    def glob(self) -> str:
        """The pattern as a glob: each directive becomes as many ``[0-9]`` as its width."""
        parts = []
        for directive, wildcard, literal in _TOKEN.findall(self.pattern):
            if directive:
                parts.append("[0-9]" * _WIDTH[directive])
            else:
                parts.append(wildcard or glob.escape(literal))
        return "".join(parts)

    def _regex(self) -> re.Pattern[str]:
        parts = []
        for index, (directive, wildcard, literal) in enumerate(_TOKEN.findall(self.pattern)):
            if directive:
                parts.append(f"(?P<{directive}_{index}>[0-9]{{{_WIDTH[directive]}}})")
            elif wildcard:
                parts.append("[^/]" if wildcard == "?" else "[^/]*")
            else:
                parts.append(re.escape(literal))
        return re.compile("".join(parts))

    def parse(self, relative: str) -> dt.datetime:
        """Time of a ``/``-separated path relative to the root.

        Raises:
            ValueError: naming the path, if it does not match or gives an invalid or inconsistent time.
        """
        found = self._regex().fullmatch(relative)
        if found is None:
            raise ValueError(f"{relative} does not match the time pattern {self.pattern!r}")
        fields: dict[str, int] = {}
        for group, text in found.groupdict().items():
            key = group.split("_")[0]
            if fields.setdefault(key, int(text)) != int(text):
                raise ValueError(f"{relative}: %{key} differs between its occurrences in {self.pattern!r}")
        year = _year(fields)
        try:
            if "m" in fields and "d" in fields:
                day = dt.datetime(year, fields["m"], fields["d"])
            else:
                day = dt.datetime(year, 1, 1) + dt.timedelta(days=fields["j"] - 1)
                if not 1 <= fields["j"] <= 366 or day.year != year:
                    raise ValueError(f"day of year {fields['j']} does not exist in {year}")
            clock = dt.time(fields.get("H", 0), fields.get("M", 0), fields.get("S", 0))
        except ValueError as error:
            raise ValueError(f"{relative}: not a valid time for {self.pattern!r} ({error})") from None
        doy = day.timetuple().tm_yday
        if fields.get("j", doy) != doy or fields.get("y", year % 100) != year % 100:
            raise ValueError(f"{relative}: the date differs between its occurrences in {self.pattern!r}")
        return dt.datetime.combine(day.date(), clock)

    def format(self, time: dt.datetime) -> str:
        """The path a file of this time would have (wildcards are left as they are)."""
        return "".join(
            time.strftime("%" + d) if d else (w or lit) for d, w, lit in _TOKEN.findall(self.pattern)
        )

    def discover(self, root: str | Path) -> Discovery:
        """All files under ``root`` matching the pattern, sorted by path (not by time)."""
        root = Path(root)
        out = Discovery()
        for path in sorted(p for p in root.glob(self.glob()) if p.is_file()):
            try:
                out.matches.append(Match(path, self.parse(path.relative_to(root).as_posix())))
            except ValueError as error:
                out.rejected.append((path, str(error)))
        return out
