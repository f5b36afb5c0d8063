#!/usr/bin/env python3
"""tools/kernel-trace/step_profile.py on a made-up trace: runs cut at idle gaps, and each kernel
charged with what it adds to its run (overlapping starts, as programmatic dependent launch gives
them, are not counted twice)."""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
tool = os.path.join(here, "..", "tools", "kernel-trace", "step_profile.py")

# start, duration (ns): run A is k1 [0, 10 us), k2 [5, 12 us) (starts early, adds 2 us), k1 again
# [12, 20 us); then 100 us idle; run B is one k3 [120, 150 us).
rows = [(0, 10000, 4, "void moshi::cuda::(anonymous namespace)::k1<1>(float const*)"),
        (5000, 7000, 8, "void moshi::cuda::k2(int)"),
        (12000, 8000, 4, "void moshi::cuda::(anonymous namespace)::k1<1>(float const*)"),
        (120000, 30000, 2, "k3")]
with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
    f.write("start_ns,duration_ns,blocks,name\n")
    for s, d, b, n in rows:
        f.write(f'{s},{d},{b},"{n}"\n')
    path = f.name
try:
    out = subprocess.run([sys.executable, tool, path, "--gap", "50", "--last", "2", "--min-kernels", "1"],
                         check=True, capture_output=True, text=True).stdout
finally:
    os.unlink(path)
lines = out.splitlines()
assert "run of 3 kernels, 20.0 us" in lines, out
assert "run of 1 kernels, 30.0 us" in lines, out
k1 = next(l for l in lines if "k1<1> [4 blocks]" in l).split()
assert k1[:3] == ["2", "18.0", "18.0"], k1  # 10 + 8 added, 10 + 8 own
k2 = next(l for l in lines if "k2 [8 blocks]" in l).split()
assert k2[:3] == ["1", "2.0", "7.0"], k2  # ends 2 us after k1: adds 2 of its 7

# Bad input: one line on stderr and a non-zero exit, for a missing file and a malformed row.
def refuses(path, why):
    r = subprocess.run([sys.executable, tool, path], capture_output=True, text=True)
    err = r.stderr.strip()
    assert r.returncode != 0 and len(err.splitlines()) == 1 and why in err, (r.returncode, err)

refuses(os.path.join(tempfile.gettempdir(), "no-such-ktrace.csv"), "cannot read")
with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
    f.write("start_ns,duration_ns,blocks,name\nabc,1,1,k\n")
    bad = f.name
try:
    refuses(bad, "line 2: not a ktrace row")
finally:
    os.unlink(bad)
print("step_profile: ok")
