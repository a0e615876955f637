"""The HTTP endpoints of ``focalcodec serve`` against the command line's bytes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from support import AUDIO, CLEAN, DATA, NOISY, run_cli

MODEL = DATA / "golden" / "causal_wavenext_50hz"
NAME = MODEL.name

KEY = "k" * 24


@pytest.mark.parametrize("entropy", ["none", "adaptive"])
@pytest.mark.parametrize("clip", [CLEAN, NOISY])
def test_encode_gives_the_bytes_of_the_cli(server, tmp_path, clip, entropy):
    source = AUDIO / clip
    cli = tmp_path / "cli.fcz"
    assert run_cli("encode", source, "-o", cli, "-m", MODEL, "--entropy", entropy) == 0
    status, body, headers = server.post(
        f"/v1/encode?model={NAME}&entropy={entropy}", source.read_bytes()
    )
    assert status == 200, body
    assert headers["content-type"] == "application/x-focalcodec"
    assert body == cli.read_bytes()


def test_decode_and_resynth_give_the_audio_of_the_cli(server, tmp_path):
    source = AUDIO / CLEAN
    fcz, wav, rec = tmp_path / "a.fcz", tmp_path / "a.wav", tmp_path / "r.wav"
    assert run_cli("encode", source, "-o", fcz, "-m", MODEL) == 0
    assert run_cli("decode", fcz, "-o", wav, "-m", MODEL) == 0
    assert run_cli("resynth", source, "-o", rec, "-m", MODEL) == 0
    status, body, headers = server.post("/v1/decode", fcz.read_bytes())
    assert status == 200, body
    assert headers["content-type"] == "audio/wav"
    assert body == wav.read_bytes()
    status, body, _ = server.post(f"/v1/resynth?model={NAME}", source.read_bytes())
    assert status == 200, body
    assert body == rec.read_bytes()
    status, body, _ = server.post("/v1/resynth?format=flac", source.read_bytes())
    sig, rate = sf.read(io.BytesIO(body))
    ref, ref_rate = sf.read(rec)
    # The same audio, stored as 16-bit FLAC instead of WAV: within one step of 2**-15.
    assert rate == ref_rate == 24000 and np.abs(sig - ref).max() <= 2**-15 + 1e-9


def test_models_health_and_openapi(server):
    status, body, _ = server.get("/v1/models")
    assert status == 200
    (card,) = json.loads(body)["models"]
    assert card["name"] == NAME and card["causal"] is True
    assert (card["sample_rate_input"], card["sample_rate_output"]) == (16000, 24000)
    assert (card["chunk_size"], card["chunk_tokens"], card["bits_per_token"]) == (
        1280,
        4,
        12,
    )
    assert card["bitrate"] == 600.0 and card["latency_ms"] == 80.0
    status, body, _ = server.get("/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body, _ = server.get("/openapi.json")
    paths = json.loads(body)["paths"]
    routes = {r.path for r in server.app.routes if hasattr(r, "methods")}
    assert routes - {"/openapi.json"} == set(paths)


def test_bad_requests_get_json_errors(server):
    status, body, _ = server.post("/v1/encode?model=nope", b"x")
    assert status == 404 and "nope" in json.loads(body)["error"]
    status, body, _ = server.post("/v1/encode", b"this is no audio file")
    assert status == 400 and "upload" in json.loads(body)["error"]
    status, body, _ = server.post("/v1/decode", b"FCZ\x01garbage")
    assert status == 400
    status, body, _ = server.post("/v1/encode?entropy=lm", b"x")
    assert status == 400
    status, body, _ = server.post("/v1/resynth?voice=alice", b"x")
    assert status == 404 and "alice" in json.loads(body)["error"]
    status, _, _ = server.post("/v1/encode", b"")
    assert status == 400


def test_uploads_over_the_cap_are_refused(start_server):
    with start_server(max_upload_mb=0.01) as srv:  # 10 KiB
        data = (AUDIO / CLEAN).read_bytes()
        assert len(data) > 10 * 1024
        status, body, _ = srv.post("/v1/encode", data)
        assert status == 413 and "over" in json.loads(body)["error"]
        # Without a Content-Length, the body is counted as it streams in.
        status, body, _ = srv.post(
            "/v1/encode", iter([data[i : i + 4096] for i in range(0, len(data), 4096)])
        )
        assert status == 413
        metric = srv.state.metrics.refused.labels("upload")._value.get()
        assert metric == 2


def test_the_api_key_guards_every_v1_endpoint(start_server):
    with start_server(api_key=KEY) as srv:
        data = (AUDIO / CLEAN).read_bytes()
        for path, body in (
            ("/v1/models", None),
            ("/v1/encode", data),
            ("/metrics", None),
        ):
            status, _, headers = srv.get(path) if body is None else srv.post(path, body)
            assert status == 401 and headers["www-authenticate"] == "Bearer"
            wrong = {"Authorization": "Bearer " + "x" * 24}
            status, _, _ = (
                srv.get(path, wrong) if body is None else srv.post(path, body, wrong)
            )
            assert status == 401
            good = {"Authorization": f"Bearer {KEY}"}
            status, _, _ = (
                srv.get(path, good) if body is None else srv.post(path, body, good)
            )
            assert status == 200
        assert srv.get("/healthz")[0] == 200  # liveness needs no key
        assert srv.state.metrics.refused.labels("auth")._value.get() == 6


def test_the_page_is_served_with_a_strict_policy(server):
    status, body, headers = server.get("/")
    assert status == 200 and b"<html" in body.lower()
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "worklet.js", "style.css"):
        assert server.get(f"/{name}")[0] == 200


def test_metrics_count_requests(server):
    server.get("/healthz")
    status, body, headers = server.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert 'focalcodec_serve_requests_total{endpoint="healthz",status="200"}' in text
    assert 'focalcodec_serve_open_sessions{kind="stream"} 0.0' in text
