"""`python -m bench.judge` (`make bench-judge`): the judge benchmark.

Simulates releases at the counter level (bench/judge/scenarios.py), runs the
sequential judge and the two threshold baselines on the same counters
(bench/judge/judges.py) and writes:

* bench/results/judge.json: one record per (judge, rps, traffic, effect):
  ``{judge, rps, traffic, effect, runs, false_rollback_rate, detection_rate,
  ttd_median_s, ttd_p90_s}``;
* bench/results/judge-nuisances.json: per nuisance, how many rollbacks it
  *caused* (the same runs with and without it, compared);
* a Markdown table on stdout (`--markdown`) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import pathlib
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.judge.judges import JUDGES
from bench.judge.runs import times_for
from bench.judge.scenarios import EFFECTS, Nuisance, Setting, Traffic

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"
RPS = (10, 100, 1000)
TRAFFIC: tuple[Traffic, ...] = ("flat", "swing")
LATE_ONSET_S = 12 * 3600
LATE_EFFECTS = ("errors_x2", "errors_x10", "latency_+25%")
NUISANCES: tuple[Nuisance, ...] = ("missing_scrape", "spiking_scrape", "shared_fault")


@dataclass(frozen=True)
class Record:
    judge: str
    rps: int
    traffic: str
    effect: str
    runs: int
    false_rollback_rate: float | None
    detection_rate: float | None
    ttd_median_s: float | None
    ttd_p90_s: float | None


def _seed(*parts: object) -> int:
    """A stable seed per setting, so reruns reproduce the numbers."""
    return sum((i + 1) * ord(ch) for i, ch in enumerate(repr(parts))) % 100_000


def summarise(judge: str, setting: Setting, times: np.ndarray) -> Record:
    rolled = np.isfinite(times)
    rate = float(rolled.mean())
    if setting.effect == "none":
        return Record(
            judge, int(setting.rps), setting.traffic, "none", len(times), rate, None, None, None
        )
    detected = times[rolled]
    median = float(np.median(detected)) if detected.size else None
    p90 = float(np.percentile(detected, 90)) if detected.size else None
    return Record(
        judge,
        int(setting.rps),
        setting.traffic,
        setting.effect,
        len(times),
        None,
        rate,
        median,
        p90,
    )


def run_all(runs: int, workers: int, console: Console) -> tuple[list[Record], list[dict[str, Any]]]:
    """Every setting, spread over `workers` processes.

    A nuisance run uses the seed of its setting's no-change run, so the two
    are the same releases apart from the nuisance: a rollback that happens
    with it and not (or later) without it was caused by it.
    """
    main = [
        (Setting(rps, traffic, effect), runs, _seed(rps, traffic, effect))
        for rps in RPS
        for traffic in TRAFFIC
        for effect in EFFECTS
    ]
    paired = [
        (Setting(rps, traffic, nuisance=nuisance), runs, _seed(rps, traffic, "none"))
        for rps in RPS
        for traffic in TRAFFIC
        for nuisance in NUISANCES
    ]
    late = [
        (Setting(rps, "flat", effect, onset_s=LATE_ONSET_S), runs // 2, _seed(rps, effect, "late"))
        for rps in RPS
        for effect in LATE_EFFECTS
    ]
    tasks = main + paired + late
    results: list[dict[str, np.ndarray]] = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for index, result in enumerate(pool.imap(times_for, tasks)):
            results.append(result)
            setting = tasks[index][0]
            console.log(
                f"{index + 1}/{len(tasks)} {setting.rps} rps {setting.traffic} "
                f"{setting.effect} {setting.nuisance}"
            )
    by_setting = {
        (s.rps, s.traffic, s.effect, s.nuisance, s.onset_s): r
        for (s, _, _), r in zip(tasks, results, strict=True)
    }
    records = [
        summarise(judge, s, by_setting[(s.rps, s.traffic, s.effect, s.nuisance, s.onset_s)][judge])
        for s, _, _ in main
        for judge in JUDGES
    ]
    nuisances = []
    for setting, _, _ in paired:
        with_it = by_setting[(setting.rps, setting.traffic, "none", setting.nuisance, 0)]
        base = by_setting[(setting.rps, setting.traffic, "none", "none", 0)]
        for judge in JUDGES:
            nuisances.append(
                {
                    "judge": judge,
                    "rps": int(setting.rps),
                    "traffic": setting.traffic,
                    "nuisance": setting.nuisance,
                    "runs": runs,
                    "rollbacks_without": float(np.isfinite(base[judge]).mean()),
                    "rollbacks_with": float(np.isfinite(with_it[judge]).mean()),
                    "caused_by_nuisance": float((with_it[judge] < base[judge]).mean()),
                }
            )
    late_records = [
        _late(judge, s, by_setting[(s.rps, s.traffic, s.effect, s.nuisance, s.onset_s)][judge])
        for s, _, _ in late
        for judge in JUDGES
    ]
    return records, nuisances, late_records


def _late(judge: str, setting: Setting, times: np.ndarray) -> dict[str, Any]:
    """A regression starting `onset_s` in: rollbacks before it are false, after it detections."""
    onset = setting.onset_s
    detected = times[np.isfinite(times) & (times >= onset)] - onset
    return {
        "judge": judge,
        "rps": int(setting.rps),
        "traffic": setting.traffic,
        "effect": setting.effect,
        "onset_s": onset,
        "runs": len(times),
        "rolled_back_before_onset": float((times < onset).mean()),
        "detection_rate": float(detected.size / len(times)),
        "ttd_median_s": float(np.median(detected)) if detected.size else None,
        "ttd_p90_s": float(np.percentile(detected, 90)) if detected.size else None,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}s" if value < 120 else f"{value / 60:.1f}m"


def markdown(
    records: list[Record], nuisances: list[dict[str, Any]], late: list[dict[str, Any]]
) -> str:
    """The three tables of docs/benchmarks.md, one column per judge."""
    judges = list(JUDGES)
    head = " | ".join(judges)
    by = {(r.judge, r.rps, r.traffic, r.effect): r for r in records}
    lines = [f"| rps | traffic | effect | {head} |", "|---:|---|---|---|---|---|"]
    for rps in RPS:
        for traffic in TRAFFIC:
            for effect in EFFECTS:
                cells = []
                for judge in judges:
                    r = by[(judge, rps, traffic, effect)]
                    if effect == "none":
                        cells.append(f"**{_pct(r.false_rollback_rate)}** false")
                    else:
                        cells.append(
                            f"{_pct(r.detection_rate)}, "
                            f"{_secs(r.ttd_median_s)} / {_secs(r.ttd_p90_s)}"
                        )
                lines.append(f"| {rps} | {traffic} | {effect} | " + " | ".join(cells) + " |")
    caused = {(n["judge"], n["rps"], n["traffic"], n["nuisance"]): n for n in nuisances}
    lines += ["", f"| rps | traffic | nuisance | {head} |", "|---:|---|---|---|---|---|"]
    for rps in RPS:
        for traffic in TRAFFIC:
            for nuisance in NUISANCES:
                cells = []
                for judge in judges:
                    n = caused[(judge, rps, traffic, nuisance)]
                    cells.append(
                        f"{_pct(n['caused_by_nuisance'])} ({_pct(n['rollbacks_without'])} "
                        f"→ {_pct(n['rollbacks_with'])})"
                    )
                lines.append(f"| {rps} | {traffic} | {nuisance} | " + " | ".join(cells) + " |")
    by_late = {(r["judge"], r["rps"], r["effect"]): r for r in late}
    lines += ["", f"| rps | effect from hour 12 | {head} |", "|---:|---|---|---|---|"]
    for rps in RPS:
        for effect in LATE_EFFECTS:
            cells = []
            for judge in judges:
                r = by_late[(judge, rps, effect)]
                cells.append(
                    f"{_pct(r['rolled_back_before_onset'])} before; "
                    f"{_pct(r['detection_rate'])}, {_secs(r['ttd_median_s'])} / "
                    f"{_secs(r['ttd_p90_s'])}"
                )
            lines.append(f"| {rps} | {effect} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _table(records: list[Record]) -> Table:
    table = Table(title="judge benchmark (24h releases, 10% canary)")
    for column in ("judge", "rps", "traffic", "effect", "false rb", "detected", "TTD p50", "p90"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r.judge,
            str(r.rps),
            r.traffic,
            r.effect,
            _pct(r.false_rollback_rate),
            _pct(r.detection_rate),
            _secs(r.ttd_median_s),
            _secs(r.ttd_p90_s),
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.judge", description=__doc__)
    parser.add_argument("--runs", type=int, default=1000, help="releases per setting")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "judge.json")
    parser.add_argument("--markdown", action="store_true", help="print the docs table too")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    started = time.monotonic()
    records, nuisances, late = run_all(args.runs, args.workers, console)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")
    nuisance_path = args.out.with_name(args.out.stem + "-nuisances.json")
    nuisance_path.write_text(json.dumps(nuisances, indent=1) + "\n")
    args.out.with_name(args.out.stem + "-late.json").write_text(json.dumps(late, indent=1) + "\n")
    console.print(_table(records))
    console.log(f"wrote {args.out} and {nuisance_path} in {time.monotonic() - started:.0f}s")
    if args.markdown:
        sys.stdout.write(markdown(records, nuisances, late))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
