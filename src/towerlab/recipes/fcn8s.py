"""fcn8s: FCN-8s semantic segmentation (VGG16 backbone; fused again with pool3's, then 8x); ADE20K, VOC or CamVid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from towerlab.recipes import fcn
from towerlab.recipes.fcn import (MAIN_METRIC, build_data, build_model, class_names, evaluate, examples,  # noqa: F401
                                  input_shape, loss, predict, predict_files, prepare)

NAME = "fcn8s"


@dataclass
class Config(fcn.Config):
    STRIDE: ClassVar[int] = 8
