"""metrics.json companions: PNG panels, bar charts and a short report.md linking them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdeconv.evaluate.metrics import minmax01
from kdeconv.figures import subplots

__all__ = ["write_report", "headline"]

_COLORS = {"kdeconv": "tab:green", "raw": "tab:gray", "residual": "tab:orange", "truth": "tab:blue"}


def _pick_examples(minority: np.ndarray, k: int) -> list[int]:
    """One mixed pattern per weight bin (closest to the bin centre), then pure ones, up to k."""
    picks: list[int] = []
    for centre in (0.45, 0.35, 0.25, 0.15):
        order = np.argsort(np.abs(minority - centre))
        if order.size and abs(minority[order[0]] - centre) < 0.05 and order[0] not in picks:
            picks.append(int(order[0]))
    rest = [int(i) for i in np.flatnonzero(minority == minority.min())[:k]]
    for i in rest + list(range(len(minority))):
        if len(picks) >= k:
            break
        if i not in picks:
            picks.append(i)
    return picks[:k]


def _examples_png(path, truth, sep_a, sep_b, sep_w, px, k) -> None:
    minority = truth.weights.min(axis=1)
    rows = _pick_examples(minority, k)
    has_c = truth.C is not None
    cols = (["C (raw)"] if has_c else []) + ["kdeconv A", "kdeconv B", "truth A", "truth B",
                                              "|A - truth A|", "|B - truth B|"]
    fig, axes = subplots(len(rows), len(cols), figsize=(1.7 * len(cols), 1.8 * len(rows)),
                             squeeze=False, constrained_layout=True)
    for r, i in enumerate(rows):
        sw = bool(px["swapped"][i])
        pa, pb = (sep_b[i], sep_a[i]) if sw else (sep_a[i], sep_b[i])  # matched to truth A, B
        ta, tb = minmax01(truth.A[i])[0], minmax01(truth.B[i])[0]
        ma, mb = minmax01(pa)[0], minmax01(pb)[0]
        images = ([minmax01(truth.C[i])[0]] if has_c else []) + [minmax01(sep_a[i])[0], minmax01(sep_b[i])[0],
                                                                 ta, tb, np.abs(ma - ta), np.abs(mb - tb)]
        for c, img in enumerate(images):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray" if c < len(cols) - 2 else "magma", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
        tw = truth.weights[i]
        axes[r, 0].set_ylabel(f"#{i} w=({tw[0]:.2f},{tw[1]:.2f})\npred ({sep_w[i, 0]:.2f},{sep_w[i, 1]:.2f})",
                              fontsize=7)
    fig.savefig(path, dpi=90)


def _weights_png(path, true_weights, sep_w, claims, cfg) -> None:
    """Predicted against true minority weight, one dot per pattern, coloured by whether kdeconv
    claimed its second grain; the claim weight as a line and the median per true-weight bin."""
    true_min, pred_min = true_weights.min(axis=1), sep_w.min(axis=1)
    fig, ax = subplots(figsize=(4.6, 4.2), constrained_layout=True)
    claimed = np.asarray(claims["kdeconv"]["second_claimed"], bool) if "kdeconv" in claims else None
    if claimed is None:
        ax.scatter(true_min, pred_min, s=4, alpha=0.4, color="tab:green", linewidths=0)
    else:
        for sel, label, color in ((claimed, "second grain claimed", "tab:green"),
                                  (~claimed, "not claimed", "tab:gray")):
            ax.scatter(true_min[sel], pred_min[sel], s=4, alpha=0.4, color=color, linewidths=0, label=label)
    edges = np.linspace(0, 0.5, 11)
    centre, median = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (true_min >= lo) & (true_min <= hi)
        if sel.any():
            centre.append((lo + hi) / 2)
            median.append(np.median(pred_min[sel]))
    ax.plot(centre, median, "k.-", lw=1, label="median per 0.05 bin")
    ax.plot([0, 0.5], [0, 0.5], color="0.6", lw=0.8, ls=":")
    if cfg.claim_weight is not None:
        ax.axhline(cfg.claim_weight, color="tab:red", lw=0.8, ls="--",
                   label=f"claim weight {cfg.claim_weight:g}")
    ax.set_xlim(-0.01, 0.51), ax.set_ylim(-0.01, 0.51)
    ax.set_xlabel("true minority weight"), ax.set_ylabel("predicted minority weight")
    ax.legend(fontsize=7, loc="upper left", markerscale=3)
    fig.savefig(path, dpi=100)


def _recovery_bins_png(path, recovery: dict, tol: str) -> None:
    methods = list(recovery)
    bins = list(next(iter(recovery.values()))["tolerances_deg"][tol]["bins"])
    fig, axes = subplots(1, 2, figsize=(10, 3.6), constrained_layout=True, sharey=True)
    width = 0.8 / len(methods)
    for ax, key, title in ((axes[0], "both", f"both constituents within {tol}°"),
                           (axes[1], "minority", f"minority constituent within {tol}°")):
        for m_i, name in enumerate(methods):
            vals = [recovery[name]["tolerances_deg"][tol]["bins"][b][key] or 0.0 for b in bins]
            ax.bar(np.arange(len(bins)) + (m_i - (len(methods) - 1) / 2) * width, vals, width,
                   label=recovery[name]["label"], color=_COLORS.get(name))
        ax.set_xticks(np.arange(len(bins)), [f"wB {b}" for b in bins])
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("fraction of mixed patterns")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.savefig(path, dpi=100)


def _recovery_overall_png(path, recovery: dict) -> None:
    tols = list(next(iter(recovery.values()))["tolerances_deg"])
    groups = []
    for tol in tols:
        groups += [(f"mixed: both\n≤{tol}°", tol, "mixed_both"),
                   (f"mixed: minority\n≤{tol}°", tol, "mixed_minority")]
    groups.append((f"pure: kept, none\ninvented ≤{tols[-1]}°", tols[-1], "pure_ok"))
    methods = list(recovery)
    width = 0.8 / len(methods)
    fig, ax = subplots(figsize=(2 + 1.6 * len(groups), 3.6), constrained_layout=True)
    for m_i, name in enumerate(methods):
        vals = [recovery[name]["tolerances_deg"][tol][key] or 0.0 for _, tol, key in groups]
        ax.bar(np.arange(len(groups)) + (m_i - (len(methods) - 1) / 2) * width, vals, width,
               label=recovery[name]["label"], color=_COLORS.get(name))
    ax.set_xticks(np.arange(len(groups)), [g[0] for g in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of patterns")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)


def _maps_png(path, truth, sep_w, px, claims, cfg) -> None:
    ny, nx = truth.nav_shape
    panels = [("truth minority weight", truth.weights.min(axis=1), "magma", (0, 0.5)),
              ("kdeconv minority weight", sep_w.min(axis=1), "magma", (0, 0.5)),
              ("NCC of B (mixed)", np.where(truth.weights.min(axis=1) >= cfg.mixed_from, px["ncc_b"], np.nan),
               "viridis", (0, 1))]
    if "kdeconv" in claims:
        tol = max(cfg.tolerances_deg)
        a = claims["kdeconv"]["angles"]
        ok = lambda x: np.nan_to_num(x, nan=np.inf) <= tol  # noqa: E731
        claimed = claims["kdeconv"]["second_claimed"]
        found = (ok(a["first_a"]) | (claimed & ok(a["second_a"])),
                 ok(a["first_b"]) | (claimed & ok(a["second_b"])))
        mixed = truth.weights.min(axis=1) >= cfg.mixed_from
        score = np.where(mixed, found[0].astype(int) + found[1].astype(int), np.nan)
        panels.append((f"kdeconv grains found ≤{tol:g}° (mixed)", score, "RdYlGn", (0, 2)))
        unseen = claims["kdeconv"].get("unseen_nearby")
        if unseen is not None:
            # 1: a second grain claimed; 0: one dropped, no pixel nearby holds its grain
            state = np.where(claimed, 1.0, np.where(unseen, 0.0, np.nan))
            panels.append(("second grain: claimed (green) / no neighbour (red)", state, "RdYlGn", (0, 1)))
    fig, axes = subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), constrained_layout=True)
    for ax, (title, values, cmap, lim) in zip(axes, panels):
        im = ax.imshow(np.asarray(values, float).reshape(ny, nx), cmap=cmap, vmin=lim[0], vmax=lim[1],
                       interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=100)


def _ncc_hist_png(path, px, minority, cfg) -> None:
    mixed = minority >= cfg.mixed_from
    fig, ax = subplots(figsize=(5, 3.2), constrained_layout=True)
    bins = np.linspace(-0.2, 1, 49)
    ax.hist(px["ncc_a"][mixed], bins=bins, alpha=0.6, label="A (mixed)")
    ax.hist(px["ncc_b"][mixed], bins=bins, alpha=0.6, label="B (mixed)")
    ax.hist(px["ncc_a"][minority < cfg.pure_below], bins=bins, alpha=0.4, label="A (pure)")
    ax.set_xlabel("NCC with truth")
    ax.set_ylabel("patterns")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)


def _fmt(x, pct=False) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def _markdown(metrics: dict, images: list[str]) -> str:
    p = metrics["pixel"]
    lines = ["# kdeconv evaluation", "",
             f"Separated store `{metrics['separated']}` against truth `{metrics['truth']}` "
             f"({metrics['truth_kind']}): {metrics['n_patterns']} patterns {metrics['pattern_shape']}, "
             f"{p['mixed']['n']} mixed (minority weight ≥ {metrics['config']['mixed_from']}), "
             f"{p['pure']['n']} pure.", ""]
    for w in metrics["warnings"]:
        lines += [f"> **Warning:** {w}", ""]
    rec = metrics.get("recovery")
    if rec:
        tols = list(next(iter(rec.values()))["tolerances_deg"])
        first_strong = (next(iter(rec.values())).get("strong") or {}).get("minority_from", "–")
        phases = metrics.get("phases") or []
        listed = ", ".join(f"{p['name']} ({p['point_group']})" for p in phases)
        lines += ["## Orientation recovery (Hough indexing, misorientation with each phase's symmetry)", "",
                  f"Indexed against {listed}; a claim matches a constituent only in the constituent's "
                  "phase.", "",
                  "| method | " + " | ".join(f"mixed: both ≤{t}° | mixed: minority ≤{t}°" for t in tols)
                  + f" | mixed, minority ≥ {first_strong}: both ≤{tols[-1]}° | pure: grain kept, none "
                    f"invented ≤{tols[-1]}° |",
                  "|---|" + "---|---|" * len(tols) + "---|---|"]
        for r in rec.values():
            cells = []
            for t in tols:
                cells += [_fmt(r["tolerances_deg"][t]["mixed_both"], True),
                          _fmt(r["tolerances_deg"][t]["mixed_minority"], True)]
            strong = (r.get("strong") or {}).get("tolerances_deg", {}).get(tols[-1], {})
            cells.append(_fmt(strong.get("mixed_both"), True))
            cells.append(_fmt(r["tolerances_deg"][tols[-1]]["pure_ok"], True))
            lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
        t = tols[-1]
        first_bins = next(iter(rec.values()))["tolerances_deg"][t]["bins"]
        bins = list(first_bins)
        lines += ["", f"Both constituents within {t}°, by minority weight:", "",
                  "| method | " + " | ".join(f"wB {b} (n={first_bins[b]['n']})" for b in bins) + " |",
                  "|---|" + "---|" * len(bins)]
        for r in rec.values():
            cells = [_fmt(r["tolerances_deg"][t]["bins"][b]["both"], True) for b in bins]
            lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
        lines.append("")
        if len(phases) > 1:
            lines += _phase_lines(rec, t)
    if rec:
        cfg = metrics["config"]
        c_mode = (metrics.get("baseline_background") or {}).get("mode", "raw")
        c_view = ("after static and dynamic background removal" if c_mode == "raw"
                  else "as exported (the map was already background-corrected)")
        neighbours = metrics.get("neighbour_claims")
        if neighbours:
            confidence = (f"it indexes with PyEBSDIndex's confidence metric ≥ {neighbours['min_cm']:g} "
                          f"as a grain that some pixel within {neighbours['radius_px']:g} scan steps has "
                          f"as its dominant grain (same phase, within {neighbours['tol_deg']:g}°; every "
                          f"method's second grain must be seen so) ({_rule_source(metrics)})")
            residual_cm = neighbours["residual_min_cm"]
        else:
            by_phase = metrics.get("claim_min_cm_by_phase") or {}
            scaled = "".join(f"; {bar:g} for {name}" for name, bar in by_phase.items()
                             if bar < cfg.get("claim_min_cm", 0))
            confidence = (f"it indexes with PyEBSDIndex's confidence metric ≥ {cfg.get('claim_min_cm', 0)}"
                          f"{scaled} ({_rule_source(metrics)}; the bar is lower for a phase whose own "
                          "dominant patterns index at a lower median confidence)")
            residual_cm = cfg["residual_min_cm"]
        lines += ["How to read this: *kdeconv* claims its dominant constituent, and the other one where "
                  f"its predicted weight is ≥ {cfg['claim_weight']} and {confidence}. *Index raw "
                  f"C* indexes the mixture {c_view}, so it names one grain at most. *Residual subtraction* "
                  "indexes C, simulates that orientation from the master pattern of the phase it indexed as, "
                  "fits scale + offset by "
                  "least squares, subtracts, and claims the residual's orientation where PyEBSDIndex's "
                  f"confidence metric is ≥ {residual_cm:g}. *True A, B* indexes the true "
                  "constituents "
                  "with the same claim rule and the true weights: the most any separation can score with "
                  "this indexer. A pure pattern is scored ok when its grain "
                  "is found and no other grain is claimed.", ""]
    lines += ["## Pixel metrics (best of the two orderings; patterns min-max scaled)", "",
              "| group | NCC A | NCC B | PSNR A (dB) | PSNR B (dB) | SSIM A | SSIM B | weight error |",
              "|---|---|---|---|---|---|---|---|"]
    for group in ("mixed", "pure"):
        g = p[group]
        cell = (lambda k, g=g: _fmt((g.get(k) or {}).get("mean")) if g.get(k) else "–")
        lines.append(f"| {group} (n={g['n']}) | {cell('ncc_a')} | {cell('ncc_b')} | {cell('psnr_a')} | "
                     f"{cell('psnr_b')} | {cell('ssim_a')} | {cell('ssim_b')} | {cell('weight_error')} |")
    lines += ["", "Means; medians and 10th percentiles are in [metrics.json](metrics.json).", ""]
    lines += _calibration_lines(metrics.get("weight_calibration"))
    for img in images:
        lines += [f"![{img}]({img})", ""]
    return "\n".join(lines)


def _phase_lines(rec: dict, tol: str) -> list[str]:
    """Recovery by phase pair (mixed pixels) and by phase (pure pixels), at ``tol``."""
    first = next(iter(rec.values()))
    groups = [(f"mixed {k}", "boundaries", k) for k in first.get("boundaries", {})]
    groups += [(f"mixed {k}", "phase_pairs", k) for k in first.get("phase_pairs", {})]
    groups += [(f"pure {k}", "phases", k) for k in first.get("phases", {})]
    lines = [f"By phase, within {tol}° (mixed: both constituents; pure: grain kept, none invented):", "",
             "| method | " + " | ".join(
                 f"{label} (n={first[part][k]['n_pure' if part == 'phases' else 'n_mixed']})"
                 for label, part, k in groups) + " |",
             "|---|" + "---|" * len(groups)]
    for r in rec.values():
        cells = []
        for _, part, k in groups:
            row = (r.get(part, {}).get(k) or {}).get("tolerances_deg", {}).get(tol, {})
            cells.append(_fmt(row.get("pure_ok" if part == "phases" else "mixed_both"), True))
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _calibration_lines(cal: dict | None) -> list[str]:
    if not cal:
        return []
    lines = ["## Weight calibration (median predicted minority weight per true-minority bin)", "",
             "| true minority | n | true median | predicted median | error |", "|---|---|---|---|---|"]
    for key, row in cal["bins"].items():
        lines.append(f"| {key} | {row['n']} | {_fmt(row['true_median'])} | {_fmt(row['pred_median'])} | "
                     f"{_fmt(row['error'])} |")
    verdict = "–" if cal["max_abs_error"] is None else (
        f"{cal['max_abs_error']:.3f} ({'within' if cal['calibrated'] else 'outside'} {cal['tolerance']})")
    return lines + ["", f"Largest |error| over the mixed bins: {verdict}.", ""]


def _rule_source(metrics: dict) -> str:
    source = set((metrics.get("claim_rule") or {}).get("source", {}).values())
    return {frozenset({"model"}): "the rule stored with the model",
            frozenset({"config"}): "set in the evaluate config",
            frozenset({"fallback"}): "kdeconv's fallback: the model carries no rule"}.get(
        frozenset(source), "from " + " and ".join(sorted(source)) if source else "as configured")


def write_report(out: Path, metrics: dict, truth, sep_a, sep_b, sep_w, px, claims, cfg) -> None:
    images = []
    if cfg.examples and len(sep_a):
        _examples_png(out / "examples.png", truth, sep_a, sep_b, sep_w, px, cfg.examples)
        images.append("examples.png")
    rec = metrics.get("recovery")
    if rec:
        _recovery_overall_png(out / "recovery_overall.png", rec)
        _recovery_bins_png(out / "recovery_by_weight.png", rec, f"{max(cfg.tolerances_deg):g}")
        images += ["recovery_overall.png", "recovery_by_weight.png"]
    if len(truth.nav_shape) == 2:
        _maps_png(out / "maps.png", truth, sep_w, px, claims, cfg)
        images.append("maps.png")
    _ncc_hist_png(out / "ncc_histogram.png", px, truth.weights.min(axis=1), cfg)
    images.append("ncc_histogram.png")
    _weights_png(out / "weights.png", truth.weights, sep_w, claims, cfg)
    images.append("weights.png")
    metrics["images"] = images
    _per_pattern_npz(out / "per_pattern.npz", truth, sep_w, px, claims)
    (out / "report.md").write_text(_markdown(metrics, images))


def _per_pattern_npz(path, truth, sep_w, px, claims) -> None:
    """Per-pattern scores in map order, for anyone who wants more than the summary."""
    arrays = {f"pixel_{k}": np.asarray(v) for k, v in px.items()}
    arrays.update(true_weights=truth.weights, pred_weights=sep_w, nav_shape=np.asarray(truth.nav_shape))
    for method, c in claims.items():
        for key, angle in c["angles"].items():
            arrays[f"{method}_angle_{key}_deg"] = angle
        arrays[f"{method}_second_claimed"] = np.asarray(c["second_claimed"])
        if c.get("second_cm") is not None:  # the indexer's confidence in the second pattern
            arrays[f"{method}_second_cm"] = np.asarray(c["second_cm"])
        if c.get("unseen_nearby") is not None:  # claims the neighbour rule dropped
            arrays[f"{method}_second_unseen_nearby"] = np.asarray(c["unseen_nearby"])
    np.savez_compressed(path, **arrays)


def headline(metrics: dict) -> str:
    """One summary line for the terminal."""
    p = metrics["pixel"]["mixed"]
    ncc = lambda k: _fmt((p.get(k) or {}).get("mean"))  # noqa: E731
    text = f"evaluate: {metrics['n_patterns']} patterns; mixed NCC A {ncc('ncc_a')}, B {ncc('ncc_b')}"
    rec = metrics.get("recovery")
    if rec:
        tol = list(next(iter(rec.values()))["tolerances_deg"])[-1]
        parts = [f"{name} {_fmt(r['tolerances_deg'][tol]['mixed_both'], True)}" for name, r in rec.items()]
        text += f"; both grains ≤{tol}°: " + ", ".join(parts)
    return text
