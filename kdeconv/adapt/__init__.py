"""Stage ``adapt``: fine-tune a separation model on one map's own pure patterns.

``pure`` holds the kernels that find pure patterns (grain interiors) without indexing,
``find_pure`` their Dask/Zarr driver (``segment_map``: a map's grains, which ``separate``'s
in-grain claims use too) and the reader of user-given pure files, ``references``
the reader of reference patterns, ``driver`` the stage itself: ``run(config) -> AdaptResult``.
"""

from kdeconv._exports import make_callable
from kdeconv.adapt.driver import AdaptResult, run
from kdeconv.adapt.find_pure import (
    MapSegmentation,
    PureSelection,
    find_pure,
    map_features,
    read_pure_file,
    segment_map,
)
from kdeconv.adapt.pure import (
    adaptive_threshold,
    choose_pure,
    interior_distance,
    neighbour_similarity,
    pattern_features,
    pure_candidates,
    relative_similarity,
    segment_grains,
)

__all__ = ["run", "AdaptResult", "PureSelection", "MapSegmentation", "find_pure", "segment_map",
           "map_features", "read_pure_file",
           "pattern_features", "neighbour_similarity", "relative_similarity", "adaptive_threshold",
           "segment_grains", "interior_distance", "pure_candidates", "choose_pure"]

make_callable(__name__, "run")  # kdeconv.adapt(config)
