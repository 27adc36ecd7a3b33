"""What every format's module works with: the Source a loader returns, and the ModelFile a
`detect` rule reads, with the levels of certainty it answers."""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..ir import IR
from ..ir.reference import Reference

if TYPE_CHECKING:  # annotations only: torch is imported where a PyTorch model is loaded
    import torch


@dataclass
class Source:
    ir: IR
    reference: Reference
    module: torch.nn.Module | None = None


class ModelFile:
    """A model file as the formats' `detect` rules see it."""

    def __init__(self, path: Path, data: bytes):
        self.path = path
        self.data = data
        try:
            self.is_zip = zipfile.is_zipfile(io.BytesIO(data))
        except Exception:  # a damaged zip directory (is_zipfile lets some of its errors through)
            self.is_zip = True

    @cached_property
    def members(self) -> list[str] | None:
        """The names in the zip archive; None when the file is not one, or is one that cannot be read."""
        if not self.is_zip:
            return None
        try:
            return zipfile.ZipFile(io.BytesIO(self.data)).namelist()
        except Exception:  # damaged bytes fail in whichever way they happen to
            return None


# What a `detect` rule returns when a file is of its format, surest first: the file's name says so
# (a `.onnx` file is ONNX whatever it holds), the archive records its format (torch.export's
# `archive_format`), or what the file holds matches. The surest wins; between equals, the earlier
# row of the format table.
BY_NAME, RECORDED, BY_CONTENT = 1, 2, 3
