"""Which plane of a stack is counted: the ``channel``, ``z`` and ``t`` options.

The rules (``docs/operations.md``), the same for every reader:

- one channel: it is used. Several: ``channel`` picks one by index or by name (compared
  after Unicode NFKC case-folding, spaces and punctuation ignored, in any script). Without
  it, a file in which exactly one channel is named like a nuclear stain (DAPI, Hoechst,
  DRAQ5, ...) is counted on that one, and the result says so; any other file gets a 422 that
  lists its channels;
- ``z`` is an index or ``max`` (the maximum projection); ``t`` is an index; ``position`` is the
  scene, XY point or series of a file that holds several. A stack with several Z, T or
  positions sent without them gets a 422 naming its axes and sizes;
- every complaint about a request is gathered into one 422, so a user fixes it in one go.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

import numpy as np

from service.files.imaging import ImageError
from service.files.stack import ImageStack
from service.settings import DEFAULT_MAX_DECODED_BYTES

# Normalized (case-folded, letters and digits only) names of stains and markers that label
# nuclei. A channel whose name contains one is taken for the nuclear channel.
NUCLEAR_STAINS = (
    "dapi",
    "hoechst",
    "draq5",
    "draq7",
    "sirdna",
    "sirhoechst",
    "spydna",
    "nucblue",
    "nucred",
    "nucspot",
    "reddot",
    "topro",
    "sytox",
    "propidiumiodide",
    "h2b",
    "nuclei",
    "nuclear",
    "nucleus",
)
NUCLEAR_EXACT = ("pi", "dna")  # too short to match inside a longer name
PROJECTION_LIMIT = 8  # a z=max projection reads at most this many times max_pixels


def normalized(name: str) -> str:
    """The name compared: Unicode NFKC, case-folded, letters and digits only, in any script
    (``Hoechst 33342`` -> ``hoechst33342``, ``ＤＡＰＩ`` -> ``dapi``, ``核`` stays ``核``)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return "".join(character for character in folded if character.isalnum())


def is_nuclear(name: str | None) -> bool:
    if not name:
        return False
    key = normalized(name)
    return key in NUCLEAR_EXACT or any(stain in key for stain in NUCLEAR_STAINS)


@dataclass(frozen=True)
class PlaneRequest:
    """The user's choice; None where they made none."""

    channel: int | str | None = None
    z: int | Literal["max"] | None = None
    t: int | None = None
    position: int | None = None


@dataclass(frozen=True)
class ChosenPlane:
    array: np.ndarray  # (Y, X), or (Y, X, S) colour samples, as stored
    channel: int
    channel_name: str | None
    channel_source: Literal["only", "given", "nuclear_stain"]
    z: int | Literal["max"] | None  # None: the file has one Z plane
    t: int | None  # None: the file has one time point
    position: int | None  # None: the file holds one position


def nuclear_channel(names: tuple[str | None, ...]) -> int | None:
    """The one channel named like a nuclear stain; None when none or several are."""
    nuclear = [index for index, name in enumerate(names) if is_nuclear(name)]
    return nuclear[0] if len(nuclear) == 1 else None


def channel_list(stack: ImageStack) -> str:
    return ", ".join(
        f"{index} ({name})" if name else str(index)
        for index, name in enumerate(stack.channel_names)
    )


def _channel(stack: ImageStack, wanted: int | str | None, problems: list[str]) -> tuple[int, str]:
    count = stack.sizes["C"]
    names = stack.channel_names
    if wanted is None:
        if count == 1:
            return 0, "only"
        picked = nuclear_channel(names)
        if picked is not None:
            return picked, "nuclear_stain"
        why = (
            "several are named like a nuclear stain"
            if any(is_nuclear(name) for name in names)
            else "none is named like a nuclear stain"
        )
        problems.append(
            f"the file has {count} channels, {channel_list(stack)}, and {why}: choose one with "
            "channel=<index or name>"
        )
        return 0, "given"
    if isinstance(wanted, str) and not (wanted.strip().isascii() and wanted.strip().isdigit()):
        key = normalized(wanted)
        matches = [index for index, name in enumerate(names) if name and normalized(name) == key]
        if len(matches) == 1:
            return matches[0], "given"
        problems.append(
            f"channel={wanted!r} names no channel of this file; its channels are "
            f"{channel_list(stack)}"
        )
        return 0, "given"
    index = int(wanted)
    if not 0 <= index < count:
        problems.append(
            f"channel={index} is outside the file's {count} channel(s): {channel_list(stack)}"
        )
    return index, "given"


def _index(
    axis: str, option: str, stack: ImageStack, wanted: int | None, problems: list[str], hint: str
) -> int:
    size = stack.sizes[axis]
    if wanted is None:
        if size > 1:
            problems.append(
                f"the file has {size} {axis} planes: choose one with {option}=<0-{size - 1}>{hint}"
            )
        return 0
    if size == 1 and wanted != 0:
        problems.append(f"{option}={wanted}, but the file has one {axis} plane ({option}=0)")
    elif not 0 <= wanted < size:
        problems.append(f"{option}={wanted} is outside 0-{size - 1} ({axis} has {size} planes)")
    return wanted


def check_position(stack: ImageStack, wanted: int | None) -> list[str]:
    """What is wrong with asking ``wanted`` of the file's positions (empty: nothing)."""
    problems: list[str] = []
    count = stack.positions
    if wanted is None:
        if count > 1:
            problems.append(
                f"the file holds {count} positions (scenes, XY points or series): choose one "
                f"with position=<0-{count - 1}>"
            )
    elif count == 1 and wanted != 0:
        problems.append(f"position={wanted}, but the file holds one position (position=0)")
    elif not 0 <= wanted < count:
        problems.append(f"position={wanted} is outside 0-{count - 1} ({count} positions)")
    return problems


def check_decoded_bytes(stack: ImageStack, planes: int, max_decoded_bytes: int) -> None:
    """413 before any decoding when ``planes`` reads of the stack would decode more than
    ``max_decoded_bytes`` (CELLCOUNT_MAX_DECODED_BYTES)."""
    needed = planes * stack.decoded_bytes
    if needed > max_decoded_bytes:
        what = f"{planes} planes" if planes > 1 else "its plane"
        raise ImageError(
            413,
            "image_too_large",
            f"counting this file would decode {what} of {_size(stack.decoded_bytes)} each, "
            f"{_size(needed)} in all; this service decodes at most {_size(max_decoded_bytes)} "
            "per upload (CELLCOUNT_MAX_DECODED_BYTES)"
            + ("; choose one plane with z=<index>" if planes > 1 else ""),
        )


def _size(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def choose_plane(
    stack: ImageStack,
    request: PlaneRequest,
    max_pixels: int,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> ChosenPlane:
    """The plane ``request`` asks for, read from the stack; a 422 saying what to send else,
    a 413 when reading it would decode more than ``max_decoded_bytes``."""
    problems = check_position(stack, request.position)
    t = _index("T", "t", stack, request.t, problems, "")
    channel, source = _channel(stack, request.channel, problems)
    project = request.z == "max"
    z = 0 if project else _index("Z", "z", stack, request.z, problems, " or project with z=max")  # type: ignore[arg-type]
    if project and stack.sizes["Z"] * stack.height * stack.width > PROJECTION_LIMIT * max_pixels:
        problems.append(
            f"z=max would read {stack.sizes['Z']} planes of {stack.width}x{stack.height} pixels, "
            f"more than {PROJECTION_LIMIT}x the per-image limit; choose one plane with z=<index>"
        )
    if problems:
        raise ImageError(
            422,
            "plane_not_chosen",
            f"cannot choose the plane to count (the file has {stack.describe_axes()}): "
            + "; ".join(problems),
        )
    check_decoded_bytes(stack, stack.sizes["Z"] if project else 1, max_decoded_bytes)
    if project:
        array = stack.read_plane(t, channel, 0)
        for plane in range(1, stack.sizes["Z"]):
            array = np.fmax(array, stack.read_plane(t, channel, plane))  # NaN: not a maximum
    else:
        array = stack.read_plane(t, channel, z)
    return ChosenPlane(
        array=array,
        channel=channel,
        channel_name=stack.channel_names[channel],
        channel_source=source,  # type: ignore[arg-type]
        z=("max" if project else z) if stack.sizes["Z"] > 1 or request.z is not None else None,
        t=t if stack.sizes["T"] > 1 or request.t is not None else None,
        position=request.position,
    )
