"""What every command's result offers a script: ``to_dict()`` and ``to_pandas()``.

The JSON contract itself lives in ``hatinspect.analysis.records``, which knows every result
type; it is imported when asked for, so a result module need not import all the others.
"""

from __future__ import annotations

import json

from hatinspect.model.extras import require


class Result:
    """Mixin for a command's frozen-dataclass result."""

    __slots__ = ()

    @property
    def sources(self) -> tuple:
        """The checkpoints the result was computed from (their notes go into its JSON)."""
        return vars(self).get("_sources", ())

    def to_dict(self) -> dict:
        """The command's JSON document (``--format json``) as Python objects."""
        from hatinspect.analysis.records import to_json

        return json.loads(to_json(self, self.sources))

    def to_pandas(self, **options):
        """The command's CSV rows (``--format csv``) as a DataFrame; needs pandas.

        ``options`` are the command's CSV switches, e.g. ``by_task=True`` for capacity.
        """
        pandas = require("pandas", "to_pandas()")
        from hatinspect.analysis.records import csv_rows

        header, rows = csv_rows(self, **options)
        return pandas.DataFrame(rows, columns=header)


def with_sources(result: Result, checkpoints) -> Result:
    """`result`, knowing the checkpoints it came from (not a field: results compare as
    before)."""
    object.__setattr__(result, "_sources", tuple(checkpoints))
    return result
