"""What a file holds, as the service reads it, without counting: ``POST /inspect``.

A user with a microscope file can see its positions, axes, channel names (and which one counts
as the nuclear stain), and pixel size before choosing ``channel``, ``z``, ``t`` and
``position``; the CLI uses it to count every position of a multi-position file.
"""

from __future__ import annotations

from service.api.schemas import ChannelInfo, FileInfo
from service.files.decoding import open_stack
from service.files.imaging import ImageError
from service.files.planes import check_position, is_nuclear, nuclear_channel


def inspect_file(name: str, data: bytes, max_pixels: int, position: int | None) -> FileInfo:
    """Reads the header and metadata only: no plane is decoded."""
    with open_stack(data, max_pixels, position) as stack:
        if position is not None and (problems := check_position(stack, position)):
            raise ImageError(422, "plane_not_chosen", f"{stack.describe_axes()}: {problems[0]}")
        names = stack.channel_names
        nuclear = nuclear_channel(names) if len(names) > 1 else 0
        needed = [
            option
            for option, count in (
                ("position", stack.positions),
                ("t", stack.sizes["T"]),
                ("z", stack.sizes["Z"]),
            )
            if count > 1
        ]
        if nuclear is None:
            needed.insert(0, "channel")
        return FileInfo(
            filename=name,
            format=stack.format,
            axes=stack.describe_axes(),
            positions=stack.positions,
            position=(position or 0) if stack.positions > 1 else None,
            time_points=stack.sizes["T"],
            z_planes=stack.sizes["Z"],
            height=stack.height,
            width=stack.width,
            channels=[
                ChannelInfo(index=index, name=name, nuclear_stain=is_nuclear(name))
                for index, name in enumerate(names)
            ],
            default_channel=nuclear,
            pixel_size_um=stack.pixel_size_um,
            pixel_size_ignored=stack.pixel_size_ignored,
            needs=needed,
        )
