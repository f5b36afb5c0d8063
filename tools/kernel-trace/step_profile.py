#!/usr/bin/env python3
"""Where a recorded step's time goes, from a ktrace.csv (tools/kernel-trace/ktrace.cpp).

The kernels are cut into runs at idle gaps longer than --gap microseconds (the host's waits
between stages). For each of the last --last runs it prints, per kernel (name and block count),
the time it added to the run's critical path: its end minus the latest end before it. With
programmatic dependent launch a kernel starts early and waits, so its own duration overstates
what it costs; the increments add up to the run's span.
"""
import argparse
import collections
import csv
import re


def short(name):
    name = re.sub(r"\(anonymous namespace\)::|moshi::|cuda::|^void ", "", name)
    return re.sub(r"\(.*$", "", name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--gap", type=float, default=15.0, help="idle gap that ends a run, microseconds")
    ap.add_argument("--last", type=int, default=2, help="runs to detail, counted from the end")
    ap.add_argument("--min-kernels", type=int, default=20, help="runs with fewer kernels are skipped")
    ap.add_argument("--list", type=int, default=0, help="also list the first N kernels of each run")
    a = ap.parse_args()
    rows = []
    try:
        with open(a.csv) as f:
            for n, r in enumerate(csv.DictReader(f), start=2):
                try:
                    rows.append((int(r["start_ns"]), int(r["duration_ns"]), r["blocks"], r["name"]))
                except (KeyError, TypeError, ValueError):
                    raise SystemExit(f"step_profile: {a.csv} line {n}: not a ktrace row "
                                     "(start_ns,duration_ns,blocks,name)")
    except OSError as e:
        raise SystemExit(f"step_profile: cannot read {a.csv}: {e.strerror}")
    if not rows:
        raise SystemExit("step_profile: no kernels in " + a.csv)
    rows.sort()
    runs, cur, end = [], [], None
    for k in rows:
        if cur and k[0] - end > a.gap * 1e3:
            runs.append(cur)
            cur = []
        cur.append(k)
        end = k[0] + k[1] if len(cur) == 1 else max(end, k[0] + k[1])
    runs.append(cur)
    runs = [r for r in runs if len(r) >= a.min_kernels]
    for run in runs[-a.last:]:
        t0 = run[0][0]
        span = max(s + d for s, d, _, _ in run) - t0
        print(f"run of {len(run)} kernels, {span / 1e3:.1f} us")
        by = collections.defaultdict(lambda: [0, 0.0, 0.0])
        latest, listed = t0, []
        for s, d, blocks, name in run:
            inc = max(0, s + d - latest)
            latest = max(latest, s + d)
            key = f"{short(name)} [{blocks} blocks]"
            by[key][0] += 1
            by[key][1] += inc / 1e3
            by[key][2] += d / 1e3
            listed.append((s - t0, d, inc, key))
        print("  count  added_us  own_us  kernel")
        for key, (n, inc, d) in sorted(by.items(), key=lambda kv: -kv[1][1]):
            print(f"  {n:5d} {inc:9.1f} {d:7.1f}  {key}")
        for s, d, inc, key in listed[: a.list]:
            print(f"    at {s / 1e3:8.2f}  own {d / 1e3:6.2f}  added {inc / 1e3:6.2f}  {key}")


if __name__ == "__main__":
    main()
