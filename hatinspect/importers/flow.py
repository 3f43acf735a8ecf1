"""The data flow of a foreign network, from its architecture rather than its key order.

A foreign file names its layers but does not record which layer feeds which. Layers are
put in the order the network computes them and given their preceding layer:

- a ResNet block is a module path ending in a number below a stage (``conv2x/0``,
  ``layer1/0``); its convs (``conv1``, ``conv2``, ...) run in order, the first reading the
  block input, and a projection shortcut (``shortcut``, ``downsample``,
  ``identity_downsample``) reads the block input too. The block's output is gated by its
  last conv's mask, so that conv feeds the next block;
- the stem (convs outside any block) runs first, blocks follow in stage and index
  order, and linear layers outside any block come last;
- a network without blocks keeps the file's order, each layer reading the one before.

Every choice is checked against the weight shapes: a conv's input channels equal its
preceding layer's units, a linear layer's inputs a whole multiple of them (after a
flatten). A flow that fails is an error naming the layer, never a silent guess.

A layer whose place follows from a ResNet block's or a known network's layout is certain;
any other layer's preceding layer is *inferred* and flagged as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from hatinspect.model.checkpoint import LayerInfo
from hatinspect.model.errors import CheckpointError

SHORTCUT_NAMES = frozenset({"shortcut", "downsample", "identity_downsample"})
BLOCK_CONV = re.compile(r"^conv\d+$")
# layer names whose chain order is a known network's: a hatinspect/CLArena MLP (fc/0, ...),
# Serra et al.'s AlexNet-like Net (c1.., fc1..) and a ResNet's stem
KNOWN_CHAIN = re.compile(r"^(fc/\d+|c\d+|fc\d+|conv1)$")


@dataclass(frozen=True)
class _Place:
    block: str | None  # "conv2x/0" for a block's layer, None outside blocks
    inner: str  # the name inside the block ("conv1", "downsample/0"), or the whole name

    @property
    def shortcut(self) -> bool:
        return self.block is not None and any(p in SHORTCUT_NAMES for p in self.inner.split("/"))


def infer_flow(path: Path, layers: list[LayerInfo]) -> tuple[LayerInfo, ...]:
    """``layers`` (preceding unset) in network order, each with its preceding layer."""
    places = {layer.name: _place(layer.name) for layer in layers}
    blocks: dict[str, list[LayerInfo]] = {}
    outside = []
    for layer in layers:
        block = places[layer.name].block
        (blocks.setdefault(block, []) if block else outside).append(layer)
    if not blocks:
        return _checked(path, _chain(outside, None, known=_known_chain(outside)))
    stem = [layer for layer in outside if len(layer.weight_shape) > 2]
    tail = [layer for layer in outside if len(layer.weight_shape) == 2]
    ordered = _chain(stem, None, known=_known_chain(stem))
    previous = ordered[-1].name if ordered else None
    for block in sorted(blocks, key=_natural):
        flowed, previous = _block(blocks[block], places, previous)
        ordered.extend(flowed)
    ordered.extend(_chain(tail, previous, known=False))
    return _checked(path, ordered)


def _place(name: str) -> _Place:
    parts = name.split("/")
    for index in range(1, len(parts) - 1):
        if parts[index].isdigit():
            return _Place("/".join(parts[: index + 1]), "/".join(parts[index + 1 :]))
    return _Place(None, name)


def _block(layers, places, block_input: str | None) -> tuple[list[LayerInfo], str | None]:
    """The block's layers with their preceding layers, and the layer gating its output."""
    main = sorted(
        (layer for layer in layers if not places[layer.name].shortcut),
        key=lambda layer: _natural(places[layer.name].inner),
    )
    shortcuts = [layer for layer in layers if places[layer.name].shortcut]
    known = all(BLOCK_CONV.match(places[layer.name].inner) for layer in main)
    flowed = _chain(main, block_input, known=known)
    flowed += [_with(layer, block_input, not known) for layer in shortcuts]
    return flowed, (main[-1].name if main else block_input)


def _chain(layers, first_input: str | None, known: bool) -> list[LayerInfo]:
    out, previous = [], first_input
    for layer in layers:
        out.append(_with(layer, previous, not known))
        previous = layer.name
    return out


def _known_chain(layers) -> bool:
    return all(KNOWN_CHAIN.match(layer.name) for layer in layers)


def _with(layer: LayerInfo, preceding: str | None, inferred: bool) -> LayerInfo:
    return replace(layer, preceding=preceding, preceding_inferred=inferred and bool(preceding))


def _checked(path: Path, layers: list[LayerInfo]) -> tuple[LayerInfo, ...]:
    by_name = {layer.name: layer for layer in layers}
    for layer in layers:
        if layer.preceding is not None:
            check_feeds(path, layer, by_name[layer.preceding])
    return tuple(layers)


def check_feeds(path: Path, layer: LayerInfo, source: LayerInfo) -> None:
    """A one-line error unless ``source``'s units can be ``layer``'s inputs."""
    conv = len(layer.weight_shape) > 2
    multiple = source.units > 0 and layer.fan_in % source.units == 0
    fits = layer.fan_in == source.units if conv else multiple
    if not fits:
        need = "equal" if conv else "be a whole multiple of"
        raise CheckpointError(
            f"{path}: no consistent data flow for layer {layer.name!r}: its {layer.fan_in}"
            f" inputs should {need} the {source.units} units of {source.name!r}, the layer"
            " that feeds it in this architecture"
        )


def inferred_note(layers) -> str | None:
    """The note saying which layers' preceding layers are inferred, or None."""
    names = [layer.name for layer in layers if layer.preceding_inferred]
    if not names:
        return None
    return (
        f"the preceding layer of {', '.join(names)} is inferred from layer names and weight"
        " shapes, not recorded in the file (preceding_inferred in JSON)"
    )


def _natural(text: str) -> list:
    """``conv10x`` after ``conv2x``, ``layer1/10`` after ``layer1/2``: a run of digits
    ordered by its value (its length without leading zeros, then its digits; never an
    ``int`` of it, which a hostile key of 5,000 digits would make raise)."""
    key = []
    for part in re.split(r"([0-9]+)", text):
        digits = part.lstrip("0")
        key.append((0, len(digits), digits) if part.isascii() and part.isdigit() else (1, 0, part))
    return key
