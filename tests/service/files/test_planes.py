import numpy as np
import pytest

from service.files.imaging import ImageError
from service.files.planes import PROJECTION_LIMIT, PlaneRequest, choose_plane, is_nuclear
from service.files.stack import ImageStack

RNG = np.random.default_rng(5)
DATA = RNG.integers(0, 1000, (2, 3, 4, 8, 8), dtype=np.uint16)  # T, C, Z, Y, X


def stack(names=("GFP", "DAPI", "Cy5"), t=2, c=3, z=4) -> ImageStack:
    return ImageStack(
        format="ome-tiff",
        sizes={"T": t, "C": c, "Z": z},
        height=8,
        width=8,
        read_plane=lambda ti, ci, zi: DATA[ti, ci, zi],
        channel_names=names,
    )


def refusal(s: ImageStack, request: PlaneRequest) -> str:
    with pytest.raises(ImageError) as caught:
        choose_plane(s, request, 10**6)
    assert (caught.value.status, caught.value.code) == (422, "plane_not_chosen")
    return caught.value.message


@pytest.mark.parametrize(
    ("name", "nuclear"),
    [
        ("DAPI", True),
        ("Hoechst 33342", True),
        ("hoechst-33258", True),
        ("DRAQ5", True),
        ("SiR-DNA", True),
        ("H2B-mCherry", True),
        ("PI", True),
        ("Nuclei", True),
        ("GFP", False),
        ("Alexa Fluor 488", False),
        ("Cy5", False),
        ("Phalloidin", False),
        (None, False),
    ],
)
def test_nuclear_stain_names(name, nuclear):
    assert is_nuclear(name) is nuclear


def test_the_one_nuclear_channel_is_picked_and_said_so():
    chosen = choose_plane(stack(t=1, z=1), PlaneRequest(), 10**6)
    assert (chosen.channel, chosen.channel_name, chosen.channel_source) == (
        1,
        "DAPI",
        "nuclear_stain",
    )
    assert np.array_equal(chosen.array, DATA[0, 1, 0])
    assert chosen.z is None and chosen.t is None


@pytest.mark.parametrize("wanted", ["cy5", " C y 5 ", "CY5", "2", 2])
def test_a_channel_by_name_ignores_case_and_spaces_or_by_index(wanted):
    chosen = choose_plane(stack(t=1, z=1), PlaneRequest(channel=wanted), 10**6)
    assert (chosen.channel, chosen.channel_source) == (2, "given")


@pytest.mark.parametrize(
    ("names", "wanted", "index"),
    [
        (("核", "細胞質"), "核", 0),
        (("核", "細胞質"), "細胞質", 1),
        (("ＤＡＰＩ", "GFP"), "dapi", 0),  # full-width letters, as Japanese software writes
        (("Straße", "GFP"), "STRASSE", 0),
        (("Ядро", "Цитоплазма"), "ядро", 0),
        (("A", "B²"), "b2", 1),
    ],
)
def test_channel_names_in_any_script_match_by_nfkc_case_folding(names, wanted, index):
    chosen = choose_plane(stack(names=names, t=1, c=2, z=1), PlaneRequest(channel=wanted), 10**6)
    assert (chosen.channel, chosen.channel_name) == (index, names[index])


def test_a_non_ascii_digit_is_a_name_not_an_index():
    message = refusal(stack(t=1, z=1), PlaneRequest(channel="²"))
    assert "names no channel" in message


def test_without_a_single_nuclear_name_the_refusal_lists_the_channels():
    message = refusal(stack(names=("GFP", "RFP", "Cy5"), t=1, z=1), PlaneRequest())
    assert "0 (GFP), 1 (RFP), 2 (Cy5)" in message and "channel=" in message
    message = refusal(stack(names=("DAPI", "Hoechst", "Cy5"), t=1, z=1), PlaneRequest())
    assert "several are named like a nuclear stain" in message
    message = refusal(stack(names=(None, None, None), t=1, z=1), PlaneRequest())
    assert "0, 1, 2" in message


def test_every_missing_choice_is_named_at_once_with_axes_and_sizes():
    message = refusal(stack(names=("A", "B", "C")), PlaneRequest())
    assert "T=2, C=3, Z=4, Y=8, X=8" in message
    assert "t=<0-1>" in message and "z=<0-3>" in message and "z=max" in message
    assert "channel=" in message


def test_out_of_range_and_unknown_names_are_refused():
    assert "z=9 is outside 0-3" in refusal(stack(), PlaneRequest(z=9, t=0))
    assert "names no channel" in refusal(stack(), PlaneRequest(channel="GPF", z=0, t=0))
    assert "t=1, but the file has one T plane" in refusal(stack(t=1), PlaneRequest(t=1, z=0))


def test_z_max_projects_the_chosen_channel_and_time():
    chosen = choose_plane(stack(), PlaneRequest(z="max", t=1, channel="dapi"), 10**6)
    assert np.array_equal(chosen.array, DATA[1, 1].max(axis=0))
    assert (chosen.z, chosen.t) == ("max", 1)


def test_a_projection_past_the_limit_is_refused():
    pixels = 8 * 8 * 4
    with pytest.raises(ImageError) as caught:
        choose_plane(stack(), PlaneRequest(z="max", t=0), pixels // PROJECTION_LIMIT - 1)
    assert "z=<index>" in caught.value.message


def test_a_multi_position_file_needs_its_position():
    several = ImageStack(
        format="czi",
        sizes={"T": 1, "C": 1, "Z": 1},
        height=8,
        width=8,
        read_plane=lambda t, c, z: DATA[0, 0, 0],
        positions=4,
    )
    message = refusal(several, PlaneRequest())
    assert "P=4" in message and "position=<0-3>" in message
    assert "outside 0-3" in refusal(several, PlaneRequest(position=4))
    assert choose_plane(several, PlaneRequest(position=2), 10**6).position == 2
    single = stack(t=1, z=1)
    assert "one position" in refusal(single, PlaneRequest(position=1))
    assert choose_plane(single, PlaneRequest(position=0), 10**6).position == 0
