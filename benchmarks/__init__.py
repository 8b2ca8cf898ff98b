"""kdeconv benchmarks: ``python -m benchmarks [--quick]`` (``make bench``).

Each ``benchmarks/bench_<stage>.py`` exposes ``run(quick: bool = False) -> list[dict]`` returning
rows with keys stage, metric, value, baseline, baseline_value, ratio, note, all measured in one
run (ratios, because the machine is noisy). ``__main__`` runs every module in its own process
and writes ``benchmarks/results.json`` with a description of the machine.
"""
