"""How ``--help`` names what each parameter takes: placeholders in the tool's words (FILE,
N, X, TEXT; an argument by its name, RUN or CHECKPOINT), ranges in words, and a usage line
of plain names (``RUN...``), never Python's types (``<list[Path]>``, ``<int range>``)."""

from pathlib import Path

PLACEHOLDERS = {int: "N", float: "X", str: "TEXT", Path: "FILE"}


class TypedPlaceholders:
    """A command mixin: every parameter it shows is named as `in_our_words` names it."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            in_our_words(param)
        return params


def in_our_words(param) -> None:
    described = getattr(param, "type_descriptor", None)
    if described is None or getattr(param, "count", False):  # click's --help; -vv counts
        return
    if param.param_type_name == "argument":
        param.metavar = param.metavar or param.name.upper()
        usage = param.metavar if param.required else f"[{param.metavar}]"
        usage += "..." if param.nargs != 1 and not usage.endswith("...") else ""
        param._usage_display_name = lambda: usage
        param.display_type_rich = lambda ctx: None  # the name says it
        return
    annotation = described.annotation
    element = getattr(annotation, "__args__", (annotation,))[0]  # list[int]: int
    if param.metavar is None and element in PLACEHOLDERS:
        param.metavar = PLACEHOLDERS[element]
    words = number_range(described.parameter_info.min, described.parameter_info.max)
    param._get_number_range_help_str = lambda: words


def number_range(low, high) -> str | None:
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f"at least {low:g}"
    if high is not None:
        return f"at most {high:g}"
    return None


def help_text(doc: str | None) -> str | None:
    """A command's docstring as its help: prose paragraphs joined into lines that the help
    wraps to the terminal (typer keeps a docstring's line breaks after the first
    paragraph), the example lines kept one a line."""
    if not doc:
        return doc
    import inspect

    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        paragraph if is_examples(paragraph) else " ".join(paragraph.split())
        for paragraph in paragraphs
    )


def is_examples(paragraph: str) -> bool:
    """Command lines, each begun by ``hatinspect`` or continuing the line before
    (which ends with a backslash, as in a shell)."""
    lines = paragraph.splitlines()
    return lines[0].startswith("hatinspect ") and all(
        line.startswith("hatinspect ") or before.endswith("\\")
        for before, line in zip(lines, lines[1:], strict=False)
    )
