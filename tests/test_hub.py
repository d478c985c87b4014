"""Publishing to and pulling from the Hub, end to end against a local Hub-compatible server.

Everything runs as a user would run it: `train.py` to push, `keras.saving.load_model("hf://...")`
to load, `app.py` to serve, each in its own process pointed at the server with HF_ENDPOINT.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from gradio_client import Client, handle_file

from greenlens.core.quality import PROBLEMS

from .apprunner import running_app
from .conftest import ROOT
from .hubserver import TOKEN

REPO = "tester/cactus-tiny"


def run(args, env, timeout=600):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    for key, value in env.items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)
    return result, result.stdout + result.stderr


def train_args(data_dir, out, seed=0, exports="none"):
    # One view (--answer-views 1): these tests are about pushing and loading, and a model that averages 8 views
    # spends minutes more converting and evaluating 8 backbones (tests/test_views.py and test_training test those).
    return ["train.py", "cactus", "--data", str(data_dir), "--out", str(out), "--weights", "none", "--image-size", "32",
            "--head-epochs", "2", "--fine-tune-epochs", "1", "--seed", str(seed), "--exports", exports,
            "--answer-views", "1"]


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def pushed(hub, hf_env, tmp_path_factory):
    """A tiny model trained on generated tiles and pushed with `train.py --push-to-hub`."""
    from .conftest import make_image

    data_dir = tmp_path_factory.mktemp("data") / "aerial-cactus"
    rows = ["id,has_cactus"]
    for index in range(40):
        make_image(data_dir / "train" / f"t{index}.jpg", (60, 140, 60) if index % 2 else (170, 140, 110), noise_seed=index)
        rows.append(f"t{index}.jpg,{index % 2}")
    (data_dir / "train.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path_factory.mktemp("models") / "cactus"
    result, output = run([*train_args(data_dir, out, exports="float"), "--push-to-hub", REPO], hf_env)
    assert result.returncode == 0, output
    first_commit = hub.store.resolve(REPO, "main")
    return {"data": data_dir, "out": out, "output": output, "commit": first_commit}


def test_push_uploads_the_whole_folder_and_prints_the_snippet(hub, pushed):
    assert f"{hub.url}/{REPO}" in pushed["output"]
    assert f'keras.saving.load_model("hf://{REPO}")' in pushed["output"]
    remote = hub.store.files(REPO, pushed["commit"])
    local = {p.name for p in pushed["out"].iterdir() if p.is_file()}
    assert local <= set(remote)
    assert {"config.json", "model.weights.h5", "README.md", "labels.json", "metrics.json", "task.json",
            "training_curves.png", "confusion_matrix.png", "roc_curve.png", "validation.csv", "test.csv",
            "classifier.tflite", "classifier.onnx", "tiles.tflite", "ood.npz"} <= set(remote)
    assert hub.store.blob(REPO, remote["model.weights.h5"]) == (pushed["out"] / "model.weights.h5").read_bytes()
    record = json.loads((pushed["out"] / "metrics.json").read_text())["runtimes"]  # written and measured by the run
    assert set(record["formats"]) == {"Keras", "classifier.tflite", "classifier.onnx"}  # --exports float: no int8
    card = hub.store.blob(REPO, remote["README.md"]).decode()
    assert f'keras.saving.load_model("hf://{REPO}")' in card
    message = json.loads((hub.store.repo(REPO) / "commits" / f"{pushed['commit']}.json").read_text())["message"]
    assert message.startswith("Upload aerial cactus model: MobileNetV2 32px, test accuracy")


def test_pushing_a_folder_does_not_load_tensorflow(pushed, hf_env):
    from .test_commands import PROBE

    _result, output = run(["-c", PROBE, "push", str(pushed["out"]), REPO], hf_env)
    assert "EXIT 0" in output, output
    assert "Pushed" in output, output
    assert "IMPORTED []" in output


def test_token_is_never_printed_or_uploaded(hub, pushed):
    assert TOKEN not in pushed["output"]
    for blob in (hub.store.repo(REPO) / "blobs").iterdir():
        assert TOKEN.encode() not in blob.read_bytes()
    assert TOKEN not in "".join(p.read_text(errors="ignore") for p in pushed["out"].iterdir() if p.is_file())
    assert any(auth == f"Bearer {TOKEN}" for _, _, auth in hub.requests)  # it was sent, to the Hub only


def test_keras_loads_hf_url_with_identical_predictions(pushed, hf_env):
    script = (
        "import keras, numpy as np, sys\n"
        "from greenlens.core.images import decode_image\n"
        f"remote = keras.saving.load_model('hf://{REPO}')\n"
        f"local = keras.saving.load_model(r'{pushed['out']}')\n"
        f"x = np.stack([decode_image(r'{pushed['data']}/train/t%d.jpg' % i) for i in range(6)]).astype('float32')\n"
        "print('MAXDIFF', float(np.abs(remote.predict_on_batch(x) - local.predict_on_batch(x)).max()))\n"
    )
    result, output = run(["-c", script], hf_env)
    assert result.returncode == 0, output
    assert float(output.split("MAXDIFF")[1].split()[0]) == 0.0


def test_app_serves_the_hub_model(pushed, hf_env):
    with running_app(env={**hf_env, "CACTUS_MODEL": REPO}) as (url, _):
        client = Client(url, verbose=False)
        result = client.predict(handle_file(str(pushed["data"] / "train" / "t1.jpg")), api_name="/classify_cactus")
        assert len(result["confidences"]) == 2
        # A model trained in seconds on made-up tiles is often unsure of a tile: it then says so rather than guess.
        lowest = json.loads((pushed["out"] / "quality.json").read_text())["min_confidence"]
        if max(item["confidence"] for item in result["confidences"]) < lowest:
            assert result["label"] == PROBLEMS["unclear"]
        else:
            assert result["label"] in {"cactus", "no cactus"}
        config = json.loads(__import__("urllib.request").request.urlopen(url + "config").read())
        assert f"hf://{REPO}@{pushed['commit'][:12]}" in json.dumps(config)


def test_second_push_makes_a_revision_and_the_old_one_stays_reachable(hub, pushed, hf_env, tmp_path):
    retrained = tmp_path / "cactus"
    result, output = run(train_args(pushed["data"], retrained, seed=1), hf_env)
    assert result.returncode == 0, output
    result, output = run(["train.py", "push", str(retrained), REPO], hf_env)
    assert result.returncode == 0, output
    second = hub.store.resolve(REPO, "main")
    assert second != pushed["commit"]
    script = (
        "from greenlens.core.repository import fetch\n"
        f"old, old_source = fetch('{REPO}@{pushed['commit']}')\n"
        f"new, new_source = fetch('hf://{REPO}')\n"
        "print('OLD', old / 'model.weights.h5'); print('NEW', new / 'model.weights.h5'); print('SRC', old_source)\n"
    )
    result, output = run(["-c", script], hf_env)
    assert result.returncode == 0, output
    lines = dict(line.split(" ", 1) for line in output.splitlines() if line[:4] in ("OLD ", "NEW ", "SRC "))
    assert sha256(lines["OLD"]) == sha256(pushed["out"] / "model.weights.h5")
    assert sha256(lines["NEW"]) == sha256(retrained / "model.weights.h5") != sha256(lines["OLD"])
    assert lines["SRC"] == f"hf://{REPO}@{pushed['commit'][:12]}"


def test_cached_model_loads_offline(pushed, hf_env):
    script = f"from greenlens.core.repository import load\nprint('LABELS', load('{REPO}').labels)\n"
    result, output = run(["-c", script], {**hf_env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert result.returncode == 0, output
    assert "LABELS ['cactus', 'no cactus']" in output


def test_bad_or_missing_token_is_refused_with_one_clear_line(pushed, hf_env, tmp_path):
    bad = "hf_wrongTokenValue000000000000000000"
    result, output = run(["train.py", "push", str(pushed["out"]), "tester/other"], {**hf_env, "HF_TOKEN": bad})
    assert result.returncode == 1
    assert "set HF_TOKEN to a token with write access" in result.stderr
    assert "Traceback" not in output
    assert bad not in output
    result, output = run(["train.py", "push", str(pushed["out"]), "tester/other"],
                         {**hf_env, "HF_TOKEN": None, "HF_HOME": str(tmp_path / "empty")})
    assert result.returncode == 1
    assert "No Hugging Face token found: set HF_TOKEN" in result.stderr
    assert "Traceback" not in output


def test_min_accuracy_refuses_to_push(pushed, hf_env, hub):
    before = hub.store.resolve(REPO, "main")
    result, output = run(["train.py", "push", str(pushed["out"]), REPO, "--min-accuracy", "1.01"], hf_env)
    assert result.returncode == 1
    assert "below --min-accuracy 1.01" in output
    assert hub.store.resolve(REPO, "main") == before


def test_missing_private_and_unreachable_repos_stop_the_app_clearly(pushed, hf_env, tmp_path):
    result, output = run(["train.py", "push", str(pushed["out"]), "tester/secret", "--private"], hf_env)
    assert result.returncode == 0, output
    cases = [
        ({**hf_env, "CACTUS_MODEL": "tester/does-not-exist"}, "was not found, or it is private"),
        ({**hf_env, "CACTUS_MODEL": "tester/secret", "HF_TOKEN": None, "HF_HOME": str(tmp_path / "anon")},
         "set HF_TOKEN"),
        ({**hf_env, "CACTUS_MODEL": "tester/elsewhere", "HF_ENDPOINT": "http://127.0.0.1:9"}, "could not be downloaded"),
    ]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(cases)) as pool:  # three app starts that each stop early: at once
        results = list(pool.map(lambda case: run(["app.py"], case[0], timeout=180)[0], cases))
    for result, (_, message) in zip(results, cases):
        assert result.returncode != 0
        assert "CACTUS_MODEL=" in result.stderr, result.stderr
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_push_replaces_the_repos_files_and_applies_private(pushed, hf_env, hub, tmp_path):
    """A second push leaves no file of the first behind, and --private makes a public repo private."""
    import shutil

    repo = "tester/replaced"
    first = tmp_path / "first"
    shutil.copytree(pushed["out"], first)
    (first / "stale-notes.txt").write_text("from an earlier experiment")
    result, output = run(["train.py", "push", str(first), repo], hf_env)
    assert result.returncode == 0, output
    assert "stale-notes.txt" in hub.store.files(repo, hub.store.resolve(repo, "main"))
    assert not hub.store.private(repo)
    second = tmp_path / "second"
    shutil.copytree(pushed["out"], second, ignore=shutil.ignore_patterns("ood.npz"))
    result, output = run(["train.py", "push", str(second), repo, "--private"], hf_env)
    assert result.returncode == 0, output
    remote = set(hub.store.files(repo, hub.store.resolve(repo, "main")))
    assert remote == {p.name for p in second.iterdir() if p.is_file()}  # no stale-notes.txt, no old ood.npz
    assert hub.store.private(repo)
