"""What every command's result offers a script: ``to_dict()`` and ``to_pandas()``, and a
notebook or terminal: a one-line ``repr``, ``_repr_html_`` and rich's ``__rich__``.

Each result type registers its JSON record and CSV rows with ``hatinspect.model.records``
beside its own definition, and the views register how results look with
``hatinspect.model.presenters``; this module knows none of them.
"""

from __future__ import annotations

import json

from hatinspect.model.extras import require
from hatinspect.model.presenters import present
from hatinspect.model.records import csv_rows, to_json


class Result:
    """Mixin for a command's frozen-dataclass result."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # `@dataclass` writes a field-by-field __repr__ (arrays and all) unless the class
        # already has one: give it ours before the decorator runs
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = Result.__repr__

    @property
    def sources(self) -> tuple:
        """The checkpoints the result was computed from (their notes go into its JSON)."""
        return vars(self).get("_sources", ())

    @property
    def figure_options(self) -> dict:
        """How its figure is drawn where it is shown (``figsize``, ``title``, ``cmap``...)."""
        return dict(vars(self).get("_figure_options", {}))

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

    def __repr__(self) -> str:
        summary = present("summary", self)
        return f"<{type(self).__name__}{f' {summary}' if summary else ''}>"

    def _repr_html_(self) -> str | None:
        """Compact tables and, where a figure says more, an inline SVG (Jupyter)."""
        return present("html", self)

    def __rich__(self):
        """The tables the command prints, for rich's console and IPython's rich display."""
        shown = present("rich", self)
        return repr(self) if shown is None else shown


def with_sources(result: Result, checkpoints) -> Result:
    """`result`, knowing the checkpoints it came from (not a field: results compare as
    before)."""
    object.__setattr__(result, "_sources", tuple(checkpoints))
    return result


def with_figure(result: Result, **options) -> Result:
    """`result`, drawing its figure with `options` where it is shown (a notebook's cell)."""
    chosen = {key: value for key, value in options.items() if value is not None}
    object.__setattr__(result, "_figure_options", chosen)
    return result
