"""``kdeconv.separate(data)``: separate patterns held in Python, with the stage's own kernel.

The same plan (background raw or processed, working size, blank frames, the map-mean static
background) and the same per-chunk work (``driver.separate_block``: the kernel with the process's
cached model) as ``kdeconv separate``, over a Dask array of the input:

- in-memory input (a numpy array, an ``EBSD`` signal) is separated at once, in this process, with
  no cluster: chunks in parallel threads, each model call on one thread, as the single-threaded
  workers of ``kdeconv separate``'s default cluster run them (the same bits: a model's float
  results depend on its thread count and batch, and batches follow the chunks);
- lazy input (a Dask array, a ``LazyEBSD`` signal, a path) stays lazy: only the background
  decision and the map's mean pattern are computed now (on ``client``, else on Dask's current
  scheduler, which is the current ``distributed.Client`` when there is one); A, B and the weights
  are Dask arrays that compute when asked (``Separation.compute``, ``to_zarr``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from kdeconv.config.claim import NEIGHBOUR_MIN_CM, NEIGHBOUR_PX, ClaimRule, has_neighbours
from kdeconv.config.separate import BackgroundConfig, SeparateConfig
from kdeconv.errors import InputError

__all__ = ["separate", "Separation"]


@dataclass
class _Plan:
    """What ``to_zarr`` needs to write the separated store as ``kdeconv separate`` does."""

    config: SeparateConfig
    shape: tuple[int, ...]
    dtype: np.dtype
    nav_chunks: tuple[int, ...]
    sha256: str
    model_input: Any                        # ModelInputPlan
    normalization: dict
    claim_rule: dict | None
    source: dict
    map_store: Path | None = None
    map_created: str | None = None
    static_background: np.ndarray | None = None
    model: dict = field(default_factory=dict)   # checkpoint, sha256, device, precision of the tasks
    patterns: Any = None                        # the input (Dask array): its grains set the in-grain bar
    model_choice: dict | None = None            # kdeconv.separate.model_choice's record, when it voted

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.nav_chunks + tuple(self.shape[-2:])

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass
class Separation:
    """The result of ``kdeconv.separate``.

    ``A`` and ``B`` (A the dominant constituent, wA >= wB) are kikuchipy ``EBSD`` signals with the
    input's detector, scan step and navigation axes when the input was a signal (``LazyEBSD`` for
    a lazy one), else arrays of the input's shape and dtype (numpy, or Dask for lazy input).
    ``weights`` is ``(..., 2)`` float32 (wA, wB; NaN on blank frames), ``blank`` ``(...)`` flags
    the frames of one value, left empty. ``background`` says what was applied ("raw" or
    "processed") and ``work_shape`` the pattern shape the model saw; ``adapted`` is the
    ``AdaptResult`` (its ``best`` checkpoint, pure patterns, held-out scores) when ``adapt=``
    fine-tuned the model on this map first.

    ``second_grain()`` says which pixels the model claims hold a second grain, under
    ``claim_rule`` (the rule ``kdeconv evaluate`` applies to the store ``to_zarr`` writes) with
    the higher bar inside grains (``in_grain``, from the map's own segmentation).
    """

    A: Any
    B: Any
    weights: Any
    blank: Any
    background: str
    work_shape: tuple[int, int]
    client: Any = field(default=None, repr=False)
    adapted: Any = None  # kdeconv.adapt's AdaptResult when ``adapt=`` fine-tuned the model first
    _plan: _Plan | None = field(default=None, repr=False)
    _claims: Any = field(default=None, repr=False)      # InGrainClaims, once measured
    _nav_values: tuple | None = field(default=None, repr=False)  # lazy weights, blank in memory
    _neighbour_fit: dict | None = field(default=None, repr=False)  # its record, once made in memory
    _neighbour_pair: Any = field(default=None, repr=False)

    @property
    def neighbour_pair(self) -> np.ndarray | None:
        """Where the neighbour fit found the pattern to be two nearby grains (bool, the navigation
        shape): B is the second grain's interior mean there and the weights are the fit's. None
        where the fit did not run, and on a lazy separation until its weights are in hand
        (``compute()``, ``to_zarr``, ``second_grain`` or ``in_grain``)."""
        return self._neighbour_pair

    def _fitted(self) -> Separation:
        """This separation (in memory) with the neighbour fit applied, as ``kdeconv separate``
        applies it after the in-grain claims."""
        plan = self._plan
        if plan is None or self.lazy or not (plan.config.neighbour_fit.enabled
                                             and plan.config.in_grain_claims):
            return self
        from kdeconv.separate.neighbours import fit_in_memory, settings_for

        claims = self._in_grain_claims()
        a, b = (np.asarray(getattr(x, "data", x)) for x in (self.A, self.B))
        with self._scheduler():
            a, b, weights, pair, record = fit_in_memory(
                plan.patterns, a, b, np.asarray(self.weights), np.asarray(self.blank, bool),
                plan.model_input.background, plan.static_background, claims, plan.patterns.chunks[:2],
                settings_for(plan.config.neighbour_fit))
        if pair is not None:
            claims = replace(claims, in_grain=claims.in_grain & ~pair)
        return replace(self, A=_like(self.A, a), B=_like(self.B, b), weights=weights, _claims=claims,
                       _neighbour_fit=record, _neighbour_pair=pair)

    @property
    def neighbour_fit_record(self) -> dict | None:
        """What the neighbour fit did (the store's ``neighbour_fit`` attrs): pixels ``fitted`` and
        ``pairs`` kept, the map's ``signal`` share, grain ``coherence`` and ``nearest``, the share
        of pattern pixels ``compared``, its settings; or ``skipped`` with the reason. None where
        the fit is off, and on a lazy separation until ``neighbour_pair`` is."""
        return self._neighbour_fit

    @property
    def model_choice(self) -> dict | None:
        """Which shipped model separated the data and why (``kdeconv.separate.model_choice``:
        ``chosen``, the vote's ``pixels`` and ``broad_looks_wins``, or the ``reason`` no vote was
        held); None when a checkpoint or a model was named."""
        return self._plan.model_choice if self._plan is not None else None

    @property
    def lazy(self) -> bool:
        """Whether A, B and the weights are still to compute (Dask arrays or ``LazyEBSD``)."""
        return hasattr(self.weights, "dask")

    def _arrays(self) -> tuple:
        return tuple(getattr(x, "data", x) for x in (self.A, self.B)) + (self.weights, self.blank)

    def compute(self) -> Separation:
        """This separation in memory (the model runs once per chunk for A, B and the weights)."""
        if not self.lazy:
            return self
        import dask

        with self._scheduler():
            a, b, w, blank = dask.compute(*self._arrays())
        done = replace(self, A=_like(self.A, a), B=_like(self.B, b), weights=w, blank=blank)
        return done._check_detector()._fitted()

    @property
    def in_grain(self) -> np.ndarray | None:
        """Pixels inside grains (bool, the navigation shape), where ``claim_rule``'s higher
        ``claim_weight_in_grain`` applies: the map segmented from its patterns alone, as
        ``kdeconv separate`` does (measured on first use; a lazy separation computes its weights).
        None when ``in_grain_claims`` is off, for a line scan or a map under 5x5 pixels, and
        where too few deep grain interiors give a bar."""
        claims = self._in_grain_claims()
        return None if claims is None else claims.in_grain

    @property
    def claim_rule(self) -> ClaimRule:
        """The ``ClaimRule`` that ``second_grain`` applies, resolved as ``kdeconv evaluate``
        resolves the store's: the model's ``claim_weight`` and ``claim_min_cm`` (kdeconv's
        fallback rule for a model that carries none) and this map's ``claim_weight_in_grain``
        (measured with ``in_grain``; None where there is none)."""
        stored = {k: v for k, v in dict(self._plan.claim_rule or {}).items()
                  if k != "claim_weight_in_grain"} if self._plan is not None else {}
        claims = self._in_grain_claims()
        if claims is not None and claims.bar is not None:
            stored["claim_weight_in_grain"] = claims.bar
        return ClaimRule.resolve(None, None, stored or None)[0]

    def second_grain(self, cm=None, cm_a=None, phase_a=None, phase_b=None, xmap_a=None, xmap_b=None,
                     neighbour_px: float | None = NEIGHBOUR_PX) -> np.ndarray:
        """Where a second grain is claimed (bool, the navigation shape): B's weight reaches
        ``claim_rule.claim_weight`` (``claim_weight_in_grain`` at ``in_grain`` pixels, the higher
        of the two there) and B indexes with confidence ``cm`` of at least ``claim_min_cm``, as
        ``kdeconv evaluate`` claims. Blank frames are never claimed.

        ``cm``: the confidence metric of B's indexing per pattern (the navigation shape, or flat
        in row-major order; 0 or NaN where unindexed), e.g. ``xmap.cm`` from kikuchipy's
        ``hough_indexing`` of ``B``. None: the weight bars alone, as though every B indexed; that is
        the most ``evaluate`` can claim, since it also asks B to index.

        ``cm_a``: A's confidence metric, the same way. Given, the confidence bar follows how well
        the map's own dominant patterns index, as in ``evaluate`` (``kdeconv.config.claim.cm_bars``:
        lower for a phase that indexes lower, such as hcp): per phase with ``phase_a`` and
        ``phase_b`` (A's and B's phase ids, e.g. ``xmap.phase_id``), else one level for the map.

        ``xmap_a``, ``xmap_b``: orix ``CrystalMap``s of A and B indexed with one phase list (e.g.
        kikuchipy's ``hough_indexing``), all the map's points in row-major order. They give ``cm``,
        ``cm_a`` and the phase ids not passed, and on a 2-D map a second grain then counts only
        where some pixel within ``neighbour_px`` scan steps has it as its dominant grain (same
        phase, within ``NEIGHBOUR_DEG``); seen so, B need only index at ``NEIGHBOUR_MIN_CM``
        rather than the confidence bar, as ``evaluate`` claims (``kdeconv.config.claim.
        neighbour_supported``; ``neighbour_px=None``: off, the confidence bar applies)."""
        from kdeconv.config.claim import cm_bars

        rule = self.claim_rule
        weights, blank = self._weights_and_blank()
        nav = weights.shape[:-1]
        flat = np.nan_to_num(weights.reshape(-1, 2).astype(np.float64), nan=0.0)

        def per_pattern(values, name):
            values = np.asarray(values).reshape(-1)
            if values.size != len(flat):
                raise InputError(f"{name} holds {values.size} values for {len(flat)} patterns "
                                 f"(navigation shape {nav})")
            return values

        if (xmap_a is None) != (xmap_b is None):
            raise InputError("xmap_a and xmap_b go together: give both (A's and B's indexing) or neither")
        if xmap_b is not None:
            cm = _xmap_prop(xmap_b, "cm") if cm is None else cm
            cm_a = _xmap_prop(xmap_a, "cm") if cm_a is None else cm_a
            if phase_a is None and phase_b is None:
                phase_a, phase_b = np.asarray(xmap_a.phase_id), np.asarray(xmap_b.phase_id)
        cm_bar = None
        if cm is None:
            second_cm = np.ones(len(flat))
        else:
            second_cm = np.nan_to_num(per_pattern(cm, "cm").astype(np.float64), nan=0.0)
            if (phase_a is None) != (phase_b is None):
                raise InputError("phase_a and phase_b go together: give both (A's and B's phase ids) "
                                 "or neither (one confidence level for the whole map)")
            if cm_a is not None:
                first_cm = np.nan_to_num(per_pattern(cm_a, "cm_a").astype(np.float64), nan=0.0)
                phases = (None, None) if phase_a is None else \
                    (per_pattern(phase_a, "phase_a"), per_pattern(phase_b, "phase_b"))
                cm_bar, _ = cm_bars(rule.claim_min_cm, first_cm, *phases)
        in_grain = None if self.in_grain is None else self.in_grain.reshape(-1)
        if xmap_b is not None and neighbour_px is not None and has_neighbours(nav):
            # B seen nearby as a neighbour's dominant grain need only index (evaluate's rule)
            claimed = rule.claimed(flat, second_cm, in_grain, NEIGHBOUR_MIN_CM)
            claimed &= _seen_nearby(xmap_a, xmap_b, nav, neighbour_px, claimed)
        else:
            claimed = rule.claimed(flat, second_cm, in_grain, cm_bar)
        return claimed.reshape(nav) & ~np.asarray(blank, bool)

    def _in_grain_claims(self):
        """The in-grain measurement, made once; None when the plan turns it off."""
        plan = self._plan
        if plan is None or not plan.config.in_grain_claims:
            return None
        if self._claims is None:
            from kdeconv.separate.claims import in_grain_claims

            weights, _ = self._weights_and_blank()
            if self._claims is not None:  # measured (and fitted) while the weights came in
                return self._claims
            with self._scheduler():
                self._claims = in_grain_claims(weights, plan.patterns, plan.model_input.background,
                                               static_bg=plan.static_background, client=self.client,
                                               progress=False)
            self._warn_if_unfamiliar()
        return self._claims

    def _warn_if_unfamiliar(self) -> None:
        """A ``UserWarning`` where ``kdeconv separate`` prints its ``Warning:`` line: the map's
        pure grain interiors read as mixtures, or, without interiors to read, most patterns do
        (a detector the model does not know)."""
        import warnings

        from kdeconv.separate.claims import mostly_mixed_warning, unfamiliar_warning

        if self._plan is None:
            return
        record = self._claims.record if self._claims is not None else {}
        if record.get("bar") is not None:
            warning = unfamiliar_warning(record, ADAPT_HINT)
        else:
            warning = mostly_mixed_warning(self._weights_and_blank()[0], ADAPT_HINT)
        if warning is not None:
            warnings.warn(warning.removeprefix("Warning: "), UserWarning, stacklevel=_caller_level())

    def _check_detector(self) -> Separation:
        """Measure what tells a detector the model does not know (the in-grain claims when they
        are on, else the weights alone) and warn of it; returns self."""
        if self._plan is not None and self._plan.config.in_grain_claims:
            self._in_grain_claims()
        else:
            self._warn_if_unfamiliar()
        return self

    def _weights_and_blank(self) -> tuple[np.ndarray, np.ndarray]:
        """The weights and blank flags in memory (a lazy separation runs the model for them once,
        keeping neither A nor B)."""
        if not self.lazy:
            return np.asarray(self.weights), np.asarray(self.blank)
        if self._nav_values is None:
            import dask

            with self._scheduler():
                weights, blank = dask.compute(self.weights, self.blank)
            self._nav_values = (np.asarray(weights), np.asarray(blank))
            self._fit_nav_values()
        return self._nav_values

    def _fit_nav_values(self) -> None:
        """A lazy separation's weights as ``compute()`` will give them: with the neighbour fit's
        (which needs the in-grain claims, measured here from the model's weights: the fit never
        touches the deep interiors they read)."""
        plan = self._plan
        if plan is None or not (plan.config.neighbour_fit.enabled and plan.config.in_grain_claims):
            return
        from kdeconv.separate.neighbours import fit_in_memory, settings_for

        claims = self._in_grain_claims()
        weights, blank = self._nav_values
        with self._scheduler():
            _, _, weights, pair, record = fit_in_memory(
                plan.patterns, None, None, weights, np.asarray(blank, bool), plan.model_input.background,
                plan.static_background, claims, plan.patterns.chunks[:2],
                settings_for(plan.config.neighbour_fit))
        self._nav_values = (weights, blank)
        self._neighbour_fit, self._neighbour_pair = record, pair
        if pair is not None:
            self._claims = replace(claims, in_grain=claims.in_grain & ~pair)

    def to_zarr(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the separated store (the layout ``kdeconv separate`` writes; ``kdeconv export`` and
        ``kdeconv evaluate`` read it). Nothing that looks complete is left if it fails."""
        from kdeconv.io import resume
        from kdeconv.io.store import discard_output, prepare_output
        from kdeconv.separate.driver import BLANK, DONE, STATIC, create_store, resume_key

        plan = self._plan
        if plan is None:
            raise InputError("this Separation was not made by kdeconv.separate: nothing to write")
        n = int(np.prod(plan.shape[:-2]))
        nbytes = 2 * int(np.prod(plan.shape)) * np.dtype(plan.dtype).itemsize + n * 9
        inputs = tuple(p for p in (plan.map_store, plan.config.checkpoint) if p)
        staging = prepare_output(path, overwrite, inputs=inputs, nbytes=nbytes)
        try:
            key = resume_key(plan.map_store, plan, plan.sha256, plan.config, plan.map_created,
                             plan.model_input, plan.model["precision"])
            group = create_store(staging, plan, plan.source, key, plan.config, plan.sha256,
                                 plan.normalization, plan.claim_rule, plan.model_input)
            if plan.model_choice is not None:
                group.attrs["model_choice"] = plan.model_choice
            if plan.static_background is not None:
                group[STATIC][...] = plan.static_background
            targets = [group["A"], group["B"], group["weights"], group[BLANK]]
            if self.lazy:
                import dask.array as da

                with self._scheduler():
                    da.store(list(self._arrays()), targets, lock=False)
            else:
                for array, target in zip(self._arrays(), targets):
                    target[...] = array
            group[DONE][...] = 1
            group.attrs["blank_frames"] = int(np.count_nonzero(group[BLANK][...]))
            if self.lazy and self._nav_values is None:  # what the model just wrote: not run again
                self._nav_values = (np.asarray(group["weights"][...]), np.asarray(group[BLANK][...]))
            if plan.config.in_grain_claims:
                from kdeconv.separate.claims import IN_GRAIN, write_in_grain_claims
                from kdeconv.separate.neighbours import (
                    NEIGHBOUR_PAIR,
                    settings_for,
                    write_fit_result,
                    write_neighbour_fit,
                )

                claims = self._in_grain_claims()
                write_in_grain_claims(group, plan.patterns, plan.model_input.background, found=claims)
                if plan.config.neighbour_fit.enabled and self.lazy:
                    with self._scheduler():
                        record = write_neighbour_fit(group, str(staging), plan.patterns,
                                                     plan.model_input.background, plan.static_background,
                                                     claims, self.client, progress=False,
                                                     settings=settings_for(plan.config.neighbour_fit))
                    # what the store now holds answers later questions (second_grain, in_grain)
                    self._nav_values = (np.asarray(group["weights"][...]), self._nav_values[1])
                    self._neighbour_fit = record
                    if "skipped" not in record:
                        self._neighbour_pair = np.asarray(group[NEIGHBOUR_PAIR][...])
                        self._claims = replace(claims, in_grain=np.asarray(group[IN_GRAIN][...]))
                elif plan.config.neighbour_fit.enabled:
                    write_fit_result(group, self._neighbour_pair, self._neighbour_fit)
            return resume.finish(staging, path)
        except BaseException:
            discard_output(staging, path)
            raise

    def _scheduler(self):
        if self.client is not None or self._plan is None:
            return _scheduler(self.client)
        return _in_process(self._plan.model)

    def plot(self, ax=None, *, claimed=False, **kwargs):
        """Draw the minority weight wB over the scan (a line for a line scan) on ``ax`` (a new
        figure by default); returns the axes. Lazy weights are computed (the model runs).

        ``claimed``: True outlines the pixels ``second_grain()`` claims (the weight bars alone);
        or a bool array of the navigation shape to outline (``second_grain(cm=...)``)."""
        import matplotlib.pyplot as plt

        minority = self._weights_and_blank()[0][..., 1]
        outline = None
        if claimed is True:
            outline = self.second_grain()
        elif claimed is not False and claimed is not None:
            outline = np.asarray(claimed, bool)
            if outline.shape != minority.shape:
                raise InputError(f"claimed has shape {outline.shape}, the scan {minority.shape}")
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4) if minority.ndim >= 2 else (6, 3))
        if minority.ndim >= 2:
            style = {"cmap": "magma", "vmin": 0, "vmax": 0.5, "interpolation": "nearest", **kwargs}
            image = ax.imshow(minority.reshape(minority.shape[0], -1), **style)
            ax.figure.colorbar(image, ax=ax, label="wB")
            ax.set_xticks([]), ax.set_yticks([])
            if outline is not None:
                _outline_pixels(ax, outline.reshape(minority.shape[0], -1))
        else:
            ax.plot(minority, **kwargs)
            if outline is not None:
                ax.plot(np.flatnonzero(outline), minority[outline], "o", mfc="none", color="tab:cyan",
                        label="second grain")
                ax.legend(loc="upper right")
            ax.set_ylim(0, 0.5)
            ax.set_xlabel("pattern")
            ax.set_ylabel("wB")
        ax.set_title("minority weight wB")
        return ax


def _outline_pixels(ax, mask: np.ndarray, color: str = "tab:cyan") -> None:
    """Draw the edges between pixels in ``mask`` and pixels outside it (image coordinates)."""
    from matplotlib.collections import LineCollection

    padded = np.pad(np.asarray(mask, bool), 1)
    ys, xs = np.nonzero(padded[1:-1, 1:] != padded[1:-1, :-1])   # left edge of column x
    edges = [[(x - 0.5, y - 0.5), (x - 0.5, y + 0.5)] for y, x in zip(ys, xs)]
    ys, xs = np.nonzero(padded[1:, 1:-1] != padded[:-1, 1:-1])   # top edge of row y
    edges += [[(x - 0.5, y - 0.5), (x + 0.5, y - 0.5)] for y, x in zip(ys, xs)]
    ax.add_collection(LineCollection(edges, colors=color, linewidths=1.2, label="second grain"))


# --------------------------------------------------------------------------- inputs


@dataclass
class _Input:
    patterns: Any            # Dask array (..., sy, sx), whole patterns per chunk
    sampled: Any             # what the plan reads samples from (the numpy array itself when in memory)
    lazy: bool
    signal: Any = None
    source: dict = field(default_factory=dict)
    map_store: Path | None = None
    map_created: str | None = None


class _ChunkedArray:
    """An array (numpy or Dask) with Zarr-like integer ``chunks``: the plan samples by chunks."""

    def __init__(self, array: np.ndarray, chunks: tuple[int, ...]):
        self.array, self.chunks = array, tuple(int(c) for c in chunks)
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key):
        return self.array[key]


def _regular(patterns, chunk_mb: float = 32.0):
    """``patterns`` (Dask) with whole patterns per chunk and regular navigation chunks."""
    from kdeconv.io.store import nav_chunks

    nav, sig = patterns.shape[:-2], patterns.shape[-2:]
    chunks = tuple(c[0] for c in patterns.chunks[:-2])
    irregular = any(len(set(c[:-1])) > 1 or c[-1] > c[0] for c in patterns.chunks[:-2])
    if irregular or any(len(c) > 1 for c in patterns.chunks[-2:]):
        chunks = nav_chunks(nav, sig, np.dtype(patterns.dtype).itemsize, chunk_mb)[: len(nav)]
        patterns = patterns.rechunk(tuple(chunks) + tuple(sig))
    return patterns, tuple(int(c) for c in chunks)


def _lazy_view(patterns, nav_chunks):
    return _ChunkedArray(patterns, tuple(nav_chunks) + tuple(patterns.shape[-2:]))


def _signal_source(signal) -> dict:
    from kdeconv.config.detector import DetectorSpec

    nav = signal.axes_manager.navigation_axes  # x first
    steps = {f"step_{a.name}": float(a.scale) for a in nav if a.name in ("x", "y")}
    source: dict[str, Any] = {"format": "kikuchipy signal", "title": str(signal.metadata.General.title or "")}
    if steps:
        unit = next(str(a.units) for a in nav if a.name in ("x", "y"))
        source["scan"] = {"step_y": steps.get("step_y", steps.get("step_x")), "step_x": steps.get("step_x"),
                          "unit": unit if unit not in ("", "<undefined>") else "um"}
    detector = getattr(signal, "detector", None)
    if detector is not None:
        source["detector"] = DetectorSpec.from_kikuchipy(detector).to_attrs()
    return source


def _as_input(data) -> _Input:
    if hasattr(data, "axes_manager") and hasattr(data, "data"):  # a kikuchipy (HyperSpy) signal
        array = data.data
        if hasattr(array, "dask"):
            patterns, chunks = _regular(array)
            return _Input(patterns, _lazy_view(patterns, chunks), True, data, _signal_source(data))
        return _in_memory(np.asarray(array), data, _signal_source(data))
    if hasattr(data, "dask"):
        patterns, chunks = _regular(data)
        return _Input(patterns, _lazy_view(patterns, chunks), True, source={"format": "dask array"})
    if isinstance(data, (str, Path)):
        return _from_path(Path(data))
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        return _in_memory(np.asarray(data), None, {"format": "numpy array"})
    raise TypeError(f"kdeconv.separate takes a kikuchipy EBSD signal, a numpy or Dask array or a path, "
                    f"not {type(data).__name__}")


def _in_memory(array: np.ndarray, signal, source: dict) -> _Input:
    import dask.array as da

    from kdeconv.io.store import nav_chunks

    _check_shape(array.shape)
    chunks = nav_chunks(array.shape[:-2], array.shape[-2:], array.dtype.itemsize)[: array.ndim - 2]
    patterns = da.from_array(array, chunks=tuple(chunks) + tuple(array.shape[-2:]), asarray=False)
    sampled = _ChunkedArray(array, tuple(chunks) + tuple(array.shape[-2:]))
    return _Input(patterns, sampled, False, signal, source)


def _from_path(path: Path) -> _Input:
    import dask.array as da
    import zarr

    from kdeconv.io.store import open_store

    if path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zgroup").is_file()):
        group = open_store(path, "map", arrays=("patterns",))
        src = group["patterns"]
        array = zarr.open_array(str(path.resolve() / "patterns"), mode="r")
        patterns = da.from_zarr(array, chunks=tuple(src.chunks[:-2]) + tuple(src.shape[-2:]))
        return _Input(patterns, src, True, source=dict(group.attrs.get("source", {})),
                      map_store=path, map_created=group.attrs.get("created"))
    from kdeconv.io.ingest import lazy_patterns
    from kdeconv.io.sources import open_source

    source = open_source(path)
    patterns = lazy_patterns(source)
    return _Input(patterns, _lazy_view(patterns, tuple(c[0] for c in patterns.chunks[:-2])), True,
                  source=dict(source.attrs))


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) < 3:
        raise InputError(f"patterns must be (..., sy, sx) with at least one navigation axis, got shape "
                         f"{shape}")


# --------------------------------------------------------------------------- graph


@contextlib.contextmanager
def _scheduler(client):
    """Dask's scheduler for kdeconv's own computes: ``client`` when given, else the current one."""
    if client is None:
        yield
        return
    import dask

    with dask.config.set(scheduler=client.get):
        yield


@contextlib.contextmanager
def _in_process(model: dict):
    """Dask's threads in this process, as a local cluster of single-threaded workers: chunks in
    parallel, every model call on one thread (torch's thread count is restored after)."""
    import dask
    import torch

    from kdeconv.cluster import machine_cores
    from kdeconv.separate.worker import cached_separator

    cached_separator(**model)  # loaded (and torch set up) here, before the tasks run
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with dask.config.set(scheduler="threads", num_workers=machine_cores()):
            yield
    finally:
        torch.set_num_threads(previous)


def _block_parts(block: np.ndarray, **task) -> np.ndarray:
    """One chunk -> an object cell holding (A, B, weights, blank): the model runs once per chunk
    for all four arrays."""
    from kdeconv.separate.chunk import blank_frames
    from kdeconv.separate.driver import separate_block

    a, b, w = separate_block(block, **task)
    cell = np.empty((1,) * (block.ndim - 2), dtype=object)
    cell[(0,) * cell.ndim] = (a, b, w, blank_frames(block))
    return cell


def _part(cell: np.ndarray, index: int) -> np.ndarray:
    return cell.reshape(-1)[0][index]


def _graph(patterns, task: dict):
    """Dask arrays A, B, weights, blank of ``patterns``, from one task per chunk."""
    nav_ndim = patterns.ndim - 2
    nav_chunks = patterns.chunks[:nav_ndim]
    sig = list(range(nav_ndim, nav_ndim + 2))
    cells = patterns.map_blocks(_block_parts, drop_axis=sig, chunks=(1,) * nav_ndim, dtype=object,
                                meta=np.empty((0,) * nav_ndim, object), **task)

    def pick(index, chunks, dtype, new_axis):
        return cells.map_blocks(_part, index, chunks=chunks, dtype=dtype, new_axis=new_axis,
                                meta=np.empty((0,) * len(chunks), dtype))

    dtype = patterns.dtype
    return (pick(0, patterns.chunks, dtype, sig), pick(1, patterns.chunks, dtype, sig),
            pick(2, nav_chunks + ((2,),), np.float32, [nav_ndim]), pick(3, nav_chunks, bool, None))


def _like(template, data):
    """``data`` as ``template`` is: an EBSD signal with its axes and detector, or the array."""
    if template is None or not hasattr(template, "axes_manager"):
        return data
    import kikuchipy as kp

    axes = template.axes_manager.as_dictionary()
    cls = kp.signals.LazyEBSD if hasattr(data, "dask") else kp.signals.EBSD
    detector = getattr(template, "detector", None)
    extra = {"detector": detector.deepcopy()} if detector is not None else {}
    signal = cls(data, axes=[axes[f"axis-{i}"] for i in range(data.ndim)], **extra)
    signal.metadata.General.title = getattr(template.metadata.General, "title", "")
    return signal


def _signal(template, data, name: str):
    signal = _like(template, data)
    if signal is not data:
        title = signal.metadata.General.title
        signal.metadata.General.title = f"{title} {name}".strip()
    return signal


def _progress_bar(show: bool | None):
    if not show:
        return contextlib.nullcontext()
    from dask.diagnostics import ProgressBar

    return ProgressBar(minimum=2)


# --------------------------------------------------------------------------- entry point


def separate(data, *, checkpoint: str | Path | None = None, model: str = "auto", device: str = "auto",
             precision: str = "auto",
             background: str | dict | BackgroundConfig = "auto", client=None, working_size: int | None = None,
             batch_size: int | None = None, in_grain_claims: bool = True,
             residual_pass: float | None = 0.2, neighbour_fit: bool | dict = True,
             adapt: bool | dict | None = None,
             progress: bool | None = True) -> Separation:
    """Separate every pattern of ``data`` into A, B and weights.

    Parameters
    ----------
    data
        A kikuchipy ``EBSD`` or ``LazyEBSD`` signal, a numpy or Dask array ``(..., sy, sx)``, or a
        path: a map store (``kdeconv ingest``) or any vendor file ``kdeconv ingest`` reads.
    checkpoint
        A model checkpoint (``.pt``); None: a model shipped with kdeconv (``model``).
    model
        Without ``checkpoint``, which shipped model: "auto" takes the pattern size's default
        ("small_patterns" below 96 px), separates a window of a map (8x8 scan pixels or more)
        with it and the broad-looks model and keeps the one whose B looks more like the map's
        neighbouring patterns (``Separation.model_choice``); or one by name: "default",
        "broad_looks" (also trained on kinematic band profiles) or "small_patterns" (trained on
        patterns of 60-80 px).
    device, precision
        Where the model runs ("auto": a GPU when there is one) and its autocast dtype ("auto":
        bf16 on GPUs and on CPUs with AMX or AVX512-BF16, else fp32).
    background
        "auto" decides per map whether the patterns still carry the detector background ("raw":
        the map-mean static and the dynamic background are removed first) or were corrected by
        vendor software ("processed"); or a ``BackgroundConfig`` (dict) for full control.
    client
        A ``distributed.Client`` for lazy input (default: Dask's current scheduler). In-memory
        input always runs in this process.
    working_size
        Shorter side (px) the model sees; A and B are resampled back (default: the model's range).
    batch_size
        Patterns per model call; None: the device's own (on a CPU 1 MiB of input at its
        precision, the fastest measured; on a GPU as many as fit its memory).
    residual_pass
        The minority weight from which B is separated again from the residual of C after A
        (``kdeconv.model.residual_pass``: averaged with the first B below 0.3, replacing it
        above); None: one pass.
    in_grain_claims
        Measure the higher claim bar inside the map's grains (``Separation.in_grain``), as
        ``kdeconv separate`` does; False: the model's bar everywhere.
    neighbour_fit
        Near boundaries of a 2-D map, explain each pattern as two nearby grains' interiors
        (``kdeconv.separate.neighbour_fit``; needs ``in_grain_claims``): where a pair does, B is
        the second grain's interior mean and the weights are the fit's
        (``Separation.neighbour_pair``). Lazy results get it at ``compute()`` and ``to_zarr``.
        A dict sets its reach and bar (``NeighbourFitConfig``): ``radius`` (3 scan steps),
        ``far_radius`` (6, where fewer than two grains are within ``radius``; 0: no farther) and
        ``min_minority`` (0.07); for a map whose step is fine against the beam's footprint.
    adapt
        True, or a dict of ``kdeconv.adapt`` options (``out``, ``references``,
        ``reference_labels``, ``pure``, ``minutes``, ``max_steps``, ``seed``, ...; ``references``
        may be a signal or an array of pure patterns, ``reference_labels`` a list): first fine-tune
        the model (``checkpoint``, or the shipped adapt base) on this map's own pure patterns, as
        ``kdeconv separate --adapt`` does, then separate with it (``Separation.adapted``). Input
        that is not a map store is written to ``OUT.map.zarr`` first; ``out`` defaults to a new
        temporary folder, kept. With the same ``out`` a finished run is reused and an interrupted
        one resumed (``overwrite: True`` adapts again). What a real detector needs (the shipped
        model knows simulations).
    progress
        Say what was decided (background, resampling) and show the progress of in-memory input.

    Returns
    -------
    Separation
        ``A``, ``B``, ``weights``, ``blank``; ``second_grain()`` says where a second grain is
        claimed; ``to_zarr(path)`` writes the separated store, ``plot()`` draws the weight map,
        ``compute()`` brings lazy results into memory.
    """
    import dask

    from kdeconv.preprocess.background import static_background_from_mean
    from kdeconv.separate.driver import (
        check_device,
        check_model_on,
        load_checked,
        mean_of_non_blank,
        named_shipped_model,
        pick_shipped_model,
        run_precision,
        trial_pattern,
    )
    from kdeconv.separate.inputs import plan_model_input

    if isinstance(background, str):
        background = {"mode": background}
    config = SeparateConfig(checkpoint=str(checkpoint) if checkpoint is not None else None, model=model,
                            device=device, precision=precision, working_size=working_size,
                            batch_size=batch_size, background=background, in_grain_claims=in_grain_claims,
                            residual_pass=residual_pass, neighbour_fit=neighbour_fit)
    found = _as_input(data)
    patterns = found.patterns
    _check_shape(patterns.shape)
    check_device(config.device, config.precision)
    if adapt and config.model != "auto":
        raise InputError(f"model={config.model!r} names a shipped model to separate with: give it or "
                         "adapt, not both")
    adapted = _adapt_first(found, adapt, config, client, progress) if adapt else None
    if adapted is not None:
        config = config.model_copy(update={"checkpoint": str(adapted.best)})
    config = named_shipped_model(config)
    separator, sha256 = load_checked(config.checkpoint)
    model_choice = None
    with _scheduler(client) if found.lazy else dask.config.set(scheduler="synchronous"):
        plan = plan_model_input(found.sampled, separator.meta or {}, config.background, config.working_size)
        label = config.checkpoint or "default model"
        check_model_on(separator, trial_pattern(found.sampled), plan.background, label, plan.work_shape)
        config, model_choice = pick_shipped_model(config, patterns, plan,
                                                  print if progress else (lambda *_: None))
        if model_choice and model_choice["checkpoint"]:
            separator, sha256 = load_checked(config.checkpoint)
            plan = plan_model_input(found.sampled, separator.meta or {}, config.background,
                                    config.working_size)
        static = None
        if plan.background["static"] != "none":
            if int(np.prod(patterns.shape[:-2])) < 2:
                raise InputError("one pattern has no map mean to take as its static background: give "
                                 "several patterns, or background='processed'")
            mean = np.asarray(dask.compute(mean_of_non_blank(patterns))[0])
            static = static_background_from_mean(mean, config.background.static_smooth_std,
                                                  background=plan.background).astype(np.float32)
    if progress:
        print(plan.describe())
    if plan.warning():
        import warnings

        warnings.warn(plan.warning().removeprefix("Warning: "), UserWarning, stacklevel=_caller_level())
    # `auto` resolved once (on the client's workers for lazy input), so every chunk runs alike
    tasks_model = {"checkpoint": str(Path(config.checkpoint).resolve()) if config.checkpoint else None,
                   "sha256": sha256, "device": config.device,
                   "precision": run_precision(client if found.lazy else None, config.device,
                                              config.precision)}
    task = {**tasks_model, "batch_size": config.batch_size, "background": plan.background,
            "static_bg": dask.delayed(static, pure=True) if static is not None else None,
            "work_shape": plan.work_shape, "residual_pass": config.residual_pass}
    arrays = _graph(patterns, task)
    record = _Plan(config, tuple(patterns.shape), np.dtype(patterns.dtype),
                   tuple(c[0] for c in patterns.chunks[:-2]), sha256, plan,
                   dict(separator.normalization or {}), separator.claim_rule, found.source,
                   found.map_store.resolve() if found.map_store else None, found.map_created, static,
                   tasks_model,
                   patterns, model_choice)
    del separator
    if not found.lazy:
        with _in_process(tasks_model), _progress_bar(progress):
            arrays = dask.compute(*arrays)
    a, b, w, blank = arrays
    result = Separation(_signal(found.signal, a, "A"), _signal(found.signal, b, "B"), w, blank,
                        plan.decision["mode"], tuple(plan.work_shape), client if found.lazy else None,
                        adapted, record)
    # in memory the weights are here: say now whether the model knows this detector (lazy: at compute)
    return result if found.lazy else result._check_detector()._fitted()


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside kdeconv, so a warning names the user's line."""
    import sys

    package = str(Path(__file__).resolve().parents[1])
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


# What the warnings of a detector the model does not know suggest.
ADAPT_HINT = "kdeconv.separate(data, adapt=True) (adapt={'references': ...} for a stack of double patterns)"


def _adapt_first(found: _Input, adapt: bool | dict, config: SeparateConfig, client, progress):
    """``kdeconv.adapt`` on the input (``adapt=``): its map store, or one written for it."""
    import tempfile

    from kdeconv.adapt import run as run_adapt
    from kdeconv.config.adapt import settings_from_separate
    from kdeconv.io.ingest import write_map_store

    options = {} if adapt is True else dict(adapt)
    if "map" in options:
        raise InputError("adapt= adapts to the data given; it takes no 'map'")
    out = Path(options.pop("out", None) or Path(tempfile.mkdtemp(prefix="kdeconv-adapt-")) / "run")
    echo = print if progress else (lambda *_: None)

    def beside(suffix: str) -> Path:
        return Path(f"{str(out).rstrip('/')}{suffix}")

    def stored(given: _Input, path: Path) -> str:  # patterns in hand -> a map store adapt reads
        with _scheduler(client) if given.lazy else contextlib.nullcontext():
            if not options.get("overwrite") and _store_holds(path, given.patterns):
                echo(f"adapt: {path} already holds these patterns")  # an earlier call's
                return str(path)
            write_map_store(given.patterns, path, given.source, client if given.lazy else None,
                            overwrite=bool(options.get("overwrite")))
        return str(path)

    map_path = found.map_store
    if map_path is None:
        map_path = beside(".map.zarr")
        echo(f"adapt: writing the patterns to {map_path}")
        stored(found, map_path)
    references = options.get("references")
    if references is not None and not isinstance(references, (str, Path)):  # a signal or an array
        options["references"] = stored(_as_input(references), beside(".references.zarr"))
    labels = options.get("reference_labels")
    if labels is not None and not isinstance(labels, (str, Path)):  # one label per reference
        labels_file = beside(".labels.txt")
        labels_file.write_text("".join(f"{label}\n" for label in labels))
        options["reference_labels"] = str(labels_file)
    settings = {"map": str(map_path), "out": str(out), **settings_from_separate(config), **options}
    if (out / "best.pt").is_file() and not options.get("overwrite"):
        from kdeconv.adapt import AdaptResult

        echo(f"adapt: reusing {out / 'best.pt'} (overwrite=True adapts again)")  # as separate --adapt
        return AdaptResult.from_run_folder(out, map_path)
    return run_adapt(settings, client=client, progress=bool(progress), echo=echo)


def _store_holds(path: Path, patterns) -> bool:
    """Whether the map store ``path`` exists and holds exactly ``patterns`` (numpy or Dask)."""
    import dask.array as da
    import zarr

    try:
        stored = zarr.open_group(str(path), mode="r")["patterns"]
    except Exception:  # absent or not a map store: written (or refused) as any output
        return False
    if tuple(stored.shape) != tuple(patterns.shape) or stored.dtype != patterns.dtype:
        return False
    given = patterns if hasattr(patterns, "dask") else da.from_array(np.asarray(patterns))
    return bool(da.all(da.from_zarr(stored) == given.rechunk(stored.chunks)).compute())


def _xmap_prop(xmap, name: str) -> np.ndarray:
    try:
        return np.asarray(xmap.prop[name])
    except (AttributeError, KeyError):
        raise InputError(f"the crystal map holds no {name!r} property (index with kikuchipy's "
                         "hough_indexing, or pass cm= and cm_a=)") from None


def _seen_nearby(xmap_a, xmap_b, nav, radius_px: float, rows: np.ndarray) -> np.ndarray:
    """``neighbour_supported`` for two crystal maps of one phase list: B's orientation against
    the dominant (A's) orientations around it."""
    from kdeconv.config.claim import NEIGHBOUR_DEG, neighbour_supported

    n = int(np.prod(nav))
    for name, xmap in (("xmap_a", xmap_a), ("xmap_b", xmap_b)):
        if xmap.size != n:
            raise InputError(f"{name} holds {xmap.size} points for {n} patterns (navigation shape {nav}): "
                             "index every pattern of the map")
    ids_a, ids_b = np.asarray(xmap_a.phase_id).astype(np.int64), np.asarray(xmap_b.phase_id).astype(np.int64)
    top = int(max(ids_a.max(initial=-1), ids_b.max(initial=-1)))
    point_groups = []
    for pid in range(top + 1):
        phases = [x.phases[pid] for x in (xmap_a, xmap_b) if pid in x.phases.ids]
        point_groups.append(phases[0].point_group if phases else None)
    quats = [np.asarray(x.rotations.data, np.float64).reshape(-1, 4) for x in (xmap_a, xmap_b)]
    return neighbour_supported(quats[1], ids_b, quats[0], ids_a, nav, point_groups, radius_px, NEIGHBOUR_DEG,
                               rows=rows)
