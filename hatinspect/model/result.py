"""What every command's result offers a script: ``to_dict()`` and ``to_pandas()``.

Each result type registers its JSON record and CSV rows with ``hatinspect.model.records``
beside its own definition; this module knows none of them.
"""

from __future__ import annotations

import json

from hatinspect.model.extras import require
from hatinspect.model.records import csv_rows, to_json


class Result:
    """Mixin for a command's frozen-dataclass result."""

    __slots__ = ()

    @property
    def sources(self) -> tuple:
        """The checkpoints the result was computed from (their notes go into its JSON)."""
        return vars(self).get("_sources", ())

    def to_dict(self) -> dict:
        """The command's JSON document (``--format json``) as Python objects."""
        return json.loads(to_json(self, self.sources))

    def to_pandas(self, **options):
        """The command's CSV rows (``--format csv``) as a DataFrame; needs pandas.

        ``options`` are the command's CSV switches, e.g. ``by_task=True`` for capacity.
        """
        pandas = require("pandas", "to_pandas()")
        header, rows = csv_rows(self, **options)
        return pandas.DataFrame(rows, columns=header)


def with_sources(result: Result, checkpoints) -> Result:
    """`result`, knowing the checkpoints it came from (not a field: results compare as
    before)."""
    object.__setattr__(result, "_sources", tuple(checkpoints))
    return result
