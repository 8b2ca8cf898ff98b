"""Adapt a separation model to one map: find its pure patterns (grain interiors) or read the
ones the user gives, as the material for fine-tuning."""

from kdeconv.adapt.find_pure import PureSelection, find_pure, map_features, read_pure_file
from kdeconv.adapt.pure import (adaptive_threshold, choose_pure, interior_distance,
                                neighbour_similarity, pattern_features, pure_candidates,
                                relative_similarity, segment_grains)

__all__ = ["PureSelection", "find_pure", "map_features", "read_pure_file", "pattern_features",
           "neighbour_similarity", "relative_similarity", "adaptive_threshold", "segment_grains",
           "interior_distance", "pure_candidates", "choose_pure"]
