"""Run configuration generated from the science layer's parameter dataclasses."""

import dataclasses

import pytest

from astro_assets.defs.flatfield.assets import (
    DustMaskConfig,
    FinalFlatfieldConfig,
    InpaintedConfig,
    SerMedianConfig,
)
from astro_assets.defs.params import _field_docs
from astro_assets.defs.transients.model import CnnModelConfig


@pytest.mark.parametrize(
    "config",
    [SerMedianConfig, DustMaskConfig, InpaintedConfig, FinalFlatfieldConfig, CnnModelConfig],
)
def test_every_launchpad_field_has_a_description(config):
    missing = [name for name, field in config.model_fields.items() if not field.description]
    assert missing == []


def test_a_docstring_entry_may_document_several_fields():
    @dataclasses.dataclass
    class Params:
        """Parameters.

        Attributes
        ----------
        low, high : float
            Range, in ADU.
        steps : int
            How many.
        """

        low: float = 0.0
        high: float = 1.0
        steps: int = 3

    assert _field_docs(Params) == {
        "low": "Range, in ADU.",
        "high": "Range, in ADU.",
        "steps": "How many.",
    }
