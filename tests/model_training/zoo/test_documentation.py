"""The package documentation takes the right parts of the real model card."""

from __future__ import annotations

from pathlib import Path

from model_training.checkpoint import Rejection, read_record
from model_training.zoo.documentation import (
    PackageFacts,
    demoted,
    find_section,
    portable,
    render_readme,
)

ROOT = Path(__file__).resolve().parents[3]
CARD = (ROOT / "weights" / "README.md").read_text(encoding="utf-8")
FACTS = PackageFacts("x.safetensors", "0" * 64, 32, 80, 10, 11)


def test_each_shipped_checkpoint_has_its_card_section_and_limits():
    for path in sorted((ROOT / "weights").glob("*.safetensors")):
        name = read_record(path).name
        section, limits, _ = find_section(CARD, name)
        assert section is not None and f"`{name}`" in section.title, name
        assert limits and "Not for:" in limits, name


def test_a_section_without_limits_borrows_those_of_the_section_it_builds_on():
    section, limits, source = find_section(CARD, "unet16-dsb2018-synth-v1")
    assert section is not None and section.subsection("intended use and limits") is None
    assert source is not None and "unet32-dsb2018-synth-v1" in source
    assert limits


def test_headings_inside_code_fences_do_not_split_sections():
    card = "# `a`\n\n```sh\n# not a heading\n```\n\n## Intended use and limits\n\nNot for: x\n"
    section, limits, _ = find_section(card, "a")
    assert section is not None and "# not a heading" in section.body
    assert limits == "Not for: x"


def test_portable_drops_images_and_local_links():
    text = portable(
        "![worst](../docs/a.png)\nsee [counting](../docs/counting.md) and [zoo](https://bioimage.io)"
    )
    assert "png" not in text and "counting.md" not in text
    assert "see counting and [zoo](https://bioimage.io)" in text


def test_a_checkpoint_the_card_does_not_name_still_gets_its_recipe():
    record = read_record(ROOT / "weights" / "unet32.safetensors").model_copy(
        update={"name": "my-own-run"}
    )
    readme = render_readme(record, CARD, FACTS)
    assert "No section of the project's model card names `my-own-run`" in readme
    assert "**Drop specks**" in readme  # unet32 carries a size rule
    assert "**Reject unsure objects**" not in readme  # and, since v3, no peak rule
    ruled = record.model_copy(update={"rejection": Rejection(min_peak_probability=0.98)})
    assert "stays below 0.98" in render_readme(ruled, CARD, FACTS)
    assert "## Validation" in readme


def test_card_headings_nest_under_the_package_headings_but_code_stays():
    text = demoted("## What changed\n\n```sh\n# a comment\n```")
    assert text.startswith("#### What changed") and "\n# a comment\n" in text
