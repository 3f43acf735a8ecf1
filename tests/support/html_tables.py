"""The cells of the HTML tables a result shows (a notebook's output, a report)."""

from html.parser import HTMLParser


class TableCells(HTMLParser):
    """Every table row's cell texts (<br> read as a line break), and every tag."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data) -> None:
        if self._cell is not None:
            self._cell.append(data)


def cells_of(html: str) -> list[list[str]]:
    parser = TableCells()
    parser.feed(html)
    return parser.rows
