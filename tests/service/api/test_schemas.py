"""Every query option is documented: in the OpenAPI schema (with a description), in the
README's option table and in docs/operations.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.api.schemas import CountQuery, SegmentQuery

ROOT = Path(__file__).resolve().parents[3]
OPTIONS = sorted(set(CountQuery.model_fields) | set(SegmentQuery.model_fields))


def test_every_option_has_a_description_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    for path, model in (("/count", CountQuery), ("/segment", SegmentQuery)):
        parameters = {p["name"]: p for p in schema["paths"][path]["post"]["parameters"]}
        assert set(model.model_fields) <= set(parameters), path
        for name in ("channel", "z", "t", "pixel_size_um", "diameter_um"):
            assert parameters[name].get("description"), (path, name)
    segment = {p["name"]: p for p in schema["paths"]["/segment"]["post"]["parameters"]}
    assert "tiff" in segment["format"]["description"]


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_is_in_the_readme_table(option):
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| option | default | meaning |", 1)[1].split("\n\n", 1)[0]
    assert f"`{option}`" in table


@pytest.mark.parametrize(
    "option", ["channel", "z", "t", "pixel_size_um", "diameter_um", "format", "diameter"]
)
def test_the_microscope_options_are_in_the_operations_guide(option):
    assert f"`{option}" in (ROOT / "docs" / "operations.md").read_text()
