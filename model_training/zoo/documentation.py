"""The package's ``README.md``, generated from the model card and the checkpoint's record.

A package travels without the repository, so its documentation must carry what a Fiji or
napari user needs to turn probabilities into counts (threshold, minimum area, the training
nucleus size for rescaling, connected components) and the card's limits. The numbers come from
the checkpoint's record, never from prose, so they cannot disagree with the service; the card
supplies the text: the section whose title names the checkpoint, and its "Intended use and
limits" (or, where the section has none, that of the nearest earlier section it builds on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model_training.checkpoint import CheckpointRecord
from model_training.scale import BAND_ABOVE, BAND_BELOW, MAX_SCALE, MIN_SCALE

LIMITS_TITLE = "intended use and limits"

_IMAGE_LINE = re.compile(r"^\s*!\[[^\]]*\]\([^)]*\)\s*$")
_LOCAL_LINK = re.compile(r"\[([^\]]+)\]\((?!https?://)[^)]*\)")

_METRIC_COLUMNS = (
    ("n_images", "images", "{:d}"),
    ("count_mae", "count MAE", "{:.2f}"),
    ("mean_relative_count_error", "mean relative count error", "{:.1%}"),
    ("dice", "Dice", "{:.3f}"),
    ("object_f1_iou50", "object F1 @ IoU 0.5", "{:.3f}"),
)


@dataclass(frozen=True)
class CardSection:
    """One top-level (``# ``) section of the model card."""

    title: str
    body: str

    def subsection(self, title: str) -> str | None:
        """The text under the ``## `` heading whose title starts with ``title`` (any case)."""
        for heading, text in _split(self.body, "## "):
            if heading.lower().startswith(title):
                return text.strip()
        return None


def _split(text: str, marker: str) -> list[tuple[str, str]]:
    """(heading, body) pairs at lines starting with ``marker``, ignoring fenced code."""
    parts: list[tuple[str, list[str]]] = [("", [])]
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith(marker):
            parts.append((line[len(marker) :].strip(), []))
        else:
            parts[-1][1].append(line)
    return [(heading, "\n".join(lines)) for heading, lines in parts]


def card_sections(card: str) -> list[CardSection]:
    return [CardSection(title, body) for title, body in _split(card, "# ") if title]


def find_section(card: str, name: str) -> tuple[CardSection | None, str | None, str | None]:
    """The section titled with ``name`` (in backticks), its limits text, and the title of the
    section the limits came from."""
    sections = card_sections(card)
    for index, section in enumerate(sections):
        if f"`{name}`" not in section.title:
            continue
        for source in reversed(sections[: index + 1]):
            limits = source.subsection(LIMITS_TITLE)
            if limits:
                return section, limits, source.title
        return section, None, None
    return None, None, None


def _first_code(title: str | None) -> str:
    """The first backticked name in a card title (the checkpoint it is about)."""
    match = re.search(r"`([^`]+)`", title or "")
    return match.group(1) if match else (title or "")


def demoted(markdown: str, levels: int = 2) -> str:
    """Headings pushed ``levels`` deeper (outside code fences), so card text nests under the
    package README's own headings."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        out.append("#" * levels + line if not fenced and line.startswith("#") else line)
    return "\n".join(out)


def portable(markdown: str) -> str:
    """Card text that reads the same outside the repository: images (which the package does
    not carry) dropped, relative links reduced to their text."""
    lines = [line for line in markdown.splitlines() if not _IMAGE_LINE.match(line)]
    text = _LOCAL_LINK.sub(r"\1", "\n".join(lines))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def metrics_table(record: CheckpointRecord) -> str:
    """The record's evaluation summaries as a markdown table (empty when it has none)."""
    rows = []
    for key, entry in record.metrics.items():
        summary = entry.get("summary") if isinstance(entry, dict) else None
        if not isinstance(summary, dict):
            continue
        cells = [f"`{key}`"]
        for field, _, fmt in _METRIC_COLUMNS:
            value = summary.get(field)
            cells.append(fmt.format(value) if isinstance(value, int | float) else "")
        note = entry.get("note") or entry.get("command") or ""
        rows.append("| " + " | ".join([*cells, f"`{note}`" if note else ""]) + " |")
    if not rows:
        return ""
    header = ["set", *(title for _, title, _ in _METRIC_COLUMNS), "how"]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows])


def counting_recipe(record: CheckpointRecord) -> str:
    """Numbered steps from probabilities to a count, with the record's numbers."""
    steps = []
    if record.nucleus_diameter_px:
        trained = record.nucleus_diameter_px
        steps.append(
            f"**Rescale.** The network learnt nuclei of about {trained:g} px across (median "
            "equivalent diameter of the training nuclei). The service leaves images whose "
            f"nuclei are {trained / BAND_BELOW:.1f}-{trained * BAND_ABOVE:.1f} px as they are "
            f"and resizes others so that their nuclei come to {trained:g} px (by at most "
            f"{MAX_SCALE:g}x up or {1 / MIN_SCALE:g}x down), then maps the labels back. Do the "
            "same with the nucleus size you know (Fiji: *Image > Scale*)."
        )
    steps.append(
        f"**Threshold** the probabilities: foreground is `probability > {record.threshold:g}`."
    )
    steps.append(
        "**Connected components**, 8-connected (diagonal neighbours join): each component is "
        "one nucleus. The network was trained to leave a background gap between touching "
        "nuclei, so no watershed is needed."
    )
    steps.append(
        "**Fill holes** inside each component, then **drop components smaller than "
        f"{record.min_area} px** (on the network's grid, i.e. after rescaling)."
    )
    rejection = record.rejection
    if rejection.min_peak_probability > 0:
        where = (
            f"in images where more than {rejection.when_ambiguous_above:.0%} of the pixels "
            "at probability >= 0.2 stay between 0.2 and 0.8"
            if rejection.when_ambiguous_above > 0
            else "in every image"
        )
        steps.append(
            f"**Reject unsure objects**: {where}, drop components whose highest probability "
            f"stays below {rejection.min_peak_probability:g}."
        )
    if rejection.min_relative_area > 0:
        steps.append(
            f"**Drop specks**: components smaller than {rejection.min_relative_area:g} of the "
            "area of a disc of the image's nucleus diameter."
        )
    steps.append(
        "Optionally grow each nucleus by 1 px into the background (the training target removed "
        "a one-pixel rim): this changes areas, never the count."
    )
    return "\n".join(f"{index}. {step}" for index, step in enumerate(steps, start=1))


def python_snippet(record: CheckpointRecord) -> str:
    """Counting in a few lines of numpy/scipy (holes are not filled here: filling only adds
    area, so it changes the count only for a holed component just under the minimum area)."""
    return f"""```python
import numpy as np
from scipy import ndimage

probabilities = ...  # the package's output for one image, shape (y, x)
labels, _ = ndimage.label(probabilities > {record.threshold:g}, structure=np.ones((3, 3)))
areas = np.bincount(labels.ravel())[1:]
count = int((areas >= {record.min_area}).sum())
```"""


@dataclass(frozen=True)
class PackageFacts:
    """What the exporter measured or derived, for the documentation."""

    checkpoint_file: str
    checkpoint_sha256: str
    halo: int
    min_side: int
    sample_count: int  # nuclei the recipe counts on the test image
    sample_truth: int  # nuclei the generator drew


def render_readme(record: CheckpointRecord, card: str | None, facts: PackageFacts) -> str:
    """The package's README.md."""
    norm = record.normalization
    section, limits, limits_from = find_section(card, record.name) if card else (None, None, None)
    parts = [
        f"# `{record.name}`: nucleus probabilities for cell counting (U-Net)",
        "",
        f"Exported by `cellcount-export` from `{facts.checkpoint_file}` "
        f"(sha256 `{facts.checkpoint_sha256}`, created {record.created or 'unknown'}, "
        f"code `{record.code_version}`). A width-{record.base_channels} U-Net (Ronneberger et "
        "al. 2015) that gives, per pixel, the probability of belonging to a nucleus that does "
        "not touch another one, for 2-D fluorescence images of nuclei (DAPI/Hoechst-like).",
        "",
        "## Input, pre-processing, output",
        "",
        "- **Input** `raw`: one channel, axes batch, channel, y, x. y and x must be multiples "
        f"of 16, at least {facts.min_side} px (the network pools 4 times).",
        f"- **Pre-processing** (in the package): per image, the value at percentile {norm.low:g} "
        f"maps to 0 and the value at percentile {norm.high:g} to 1, without clipping, as in "
        "training and in the service.",
        "- **Output** `probability`: same shape, the nucleus probability in [0, 1] (the sigmoid "
        "is part of the network).",
        f"- **Tiling:** halo {facts.halo} px. When a tool cuts a large image into tiles, it "
        f"should overlap them and discard {facts.halo} px at each inner tile edge; that is the "
        "margin the service keeps.",
        "",
        "## How to get counts",
        "",
        counting_recipe(record),
        "",
        f"On the package's test image this recipe counts {facts.sample_count} nuclei "
        f"(the generator drew {facts.sample_truth}). In Python:",
        "",
        python_snippet(record),
        "",
        "In Fiji: *Image > Adjust > Threshold* at the value above on the probability image, "
        "then *Analyze > Analyze Particles* with *Size* at least the minimum area and *Include "
        "holes*; Fiji's particle analysis joins diagonal neighbours, as the recipe does.",
        "",
        "The cellcount service (`cellcount-serve` in the project repository) does all of this, "
        "including the per-image nucleus size estimate, and reports quality warnings.",
        "",
        "## Use it",
        "",
        "- **Fiji / deepImageJ:** install the package's `.zip` with deepImageJ's model "
        "installer (*Plugins > deepImageJ > DeepImageJ Install Model*, from a local file), "
        "then run it on an open 2-D image with *DeepImageJ Run*. deepImageJ applies the "
        "percentile pre-processing from `rdf.yaml` and tiles with the halo.",
        "- **napari:** with `bioimageio.core` installed in napari's environment, in its "
        "console: pad the image to a multiple of 16 (`np.pad(image, ((0, -h % 16), (0, -w % "
        "16)), mode='reflect')`), run `bioimageio.core.predict(model='PACKAGE.zip', "
        "inputs=padded[None, None])`, and add `out.members['probability'].data.values[0, 0, "
        ":h, :w]` as an image layer. bioimageio.core pads by the halo, which the service does "
        "not do at an image's outer edge, so a few edge pixels can differ from the service's "
        "probabilities.",
        "- **Python:** the same `predict` call; `bioimageio test PACKAGE.zip` checks that a "
        "runtime reproduces the package's test output.",
        "",
        "## Validation",
        "",
        "The test input/output pair in this package is a synthetic image "
        "(`model_training/synthetic.py`); `bioimageio test` checks that any runtime reproduces "
        "it within the spec's tolerance. Quality figures of the checkpoint, from its record "
        "(images it never trained on, except the row marked as the selection split):",
        "",
        metrics_table(record) or "(the record holds no evaluation)",
        "",
    ]
    if limits:
        parts += ["## Intended use and limits", ""]
        if section is not None and limits_from != section.title:
            parts += [
                f"As the model card states them for `{_first_code(limits_from)}`, which its "
                "section for this checkpoint builds on:",
                "",
            ]
        parts += [portable(limits), ""]
    if section is not None:
        body = demoted(portable(section.body))
        parts += ["## Model card", "", f"### {section.title}", "", body, ""]
    else:
        parts += [
            "## Model card",
            "",
            f"No section of the project's model card names `{record.name}`; the figures above "
            "are the record's own.",
            "",
        ]
    return "\n".join(parts).rstrip() + "\n"
