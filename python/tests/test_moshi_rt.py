"""The Python module: Mimi, Model/Session and run_file on tiny synthetic models."""
import os
import struct
import tempfile
import threading
import wave

import numpy as np
import pytest

import moshi_rt


@pytest.fixture(scope="module")
def model():
    return moshi_rt.Model.load("synthetic:tiny", threads=2)


@pytest.fixture(scope="module")
def mimi():
    return moshi_rt.Mimi.load("synthetic", num_codebooks=4, threads=2)


def tone(n, f=220.0, sr=24000):
    return (0.3 * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def test_mimi_round_trip_shapes(mimi):
    assert mimi.frame_size == 1920 and mimi.sample_rate == 24000 and mimi.num_codebooks == 4
    codes = mimi.encode(tone(1920 * 3 + 5))
    assert codes.dtype == np.int64 and codes.shape == (4, 4)
    assert ((codes >= 0) & (codes < 2048)).all()
    pcm = mimi.decode(codes)
    assert pcm.dtype == np.float32 and pcm.shape == (1920 * 4,)
    assert np.isfinite(pcm).all()
    # Same input, same codes; float64 input is converted.
    assert (mimi.encode(tone(1920 * 3 + 5).astype(np.float64)) == codes).all()


def test_mimi_bad_input(mimi):
    with pytest.raises(moshi_rt.Error):
        mimi.encode(np.zeros((2, 1920), dtype=np.float32))
    with pytest.raises(moshi_rt.Error):
        mimi.decode(np.full((4, 2), 5000, dtype=np.int64))
    with pytest.raises(moshi_rt.Error, match="cannot open|not"):
        moshi_rt.Mimi.load("/nonexistent.safetensors")


def test_session_step_and_reset_replays(model):
    s = model.session(seed=3)
    frames = [tone(1920, 200 + 20 * i) for i in range(6)]
    first = [s.step(f) for f in frames]
    pcm = np.concatenate([p for p, _ in first])
    assert pcm.shape == (1920 * 6,) and pcm.dtype == np.float32
    s.reset()
    again = [s.step(f) for f in frames]
    assert np.array_equal(pcm, np.concatenate([p for p, _ in again]))
    assert "".join(t for _, t in first) == "".join(t for _, t in again)
    other = model.session(seed=4)
    assert not np.array_equal(pcm, np.concatenate([other.step(f)[0] for f in frames]))
    assert pcm.shape == (1920 * 6,)


def test_session_greedy_is_seed_independent(model):
    frames = [tone(1920, 300) for _ in range(4)]
    a = model.session(seed=1, greedy=True)
    b = model.session(seed=2, greedy=True)
    pa = np.concatenate([a.step(f)[0] for f in frames])
    pb = np.concatenate([b.step(f)[0] for f in frames])
    assert np.array_equal(pa, pb)


def write_wav(path, x, sr):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(b"".join(struct.pack("<h", int(v * 32767)) for v in x))


def test_run_file_deterministic(model, tmp_path):
    src = str(tmp_path / "in.wav")
    write_wav(src, tone(16000, sr=16000), 16000)
    a, b = str(tmp_path / "a.wav"), str(tmp_path / "b.wav")
    ra = moshi_rt.run_file(model, src, a, seed=9, after=0.5)
    rb = moshi_rt.run_file(model, src, b, seed=9, after=0.5)
    assert open(a, "rb").read() == open(b, "rb").read()
    assert ra["transcript"] == rb["transcript"] and ra["frames"] == rb["frames"]
    assert ra["output_seconds"] >= 1.5
    assert all({"frame", "time_s", "token", "text"} <= set(p) for p in ra["text"])
    with pytest.raises(moshi_rt.Error, match="not found"):
        moshi_rt.run_file(model, str(tmp_path / "missing.wav"), a)


def test_gil_released_during_steps(model):
    # Two sessions stepping from two threads finish, and give what they give alone.
    frames = [tone(1920, 250) for _ in range(5)]
    solo = model.session(seed=5)
    alone = np.concatenate([solo.step(f)[0] for f in frames])
    results = {}

    def work(key):
        s = model.session(seed=5)
        results[key] = np.concatenate([s.step(f)[0] for f in frames])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(alone, r) for r in results.values())


def test_model_load_errors():
    with pytest.raises(moshi_rt.Error, match="synthetic"):
        moshi_rt.Model.load("synthetic:huge")
    with pytest.raises(moshi_rt.Error):
        moshi_rt.Model.load("synthetic:tiny", device="tpu")
