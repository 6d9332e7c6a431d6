"""The `repens` command."""

import subprocess
import sys

import pytest

from repens_sklearn import cli
from repens_sklearn.cli import main


@pytest.fixture(autouse=True)
def _decode_in_process(monkeypatch):
    """The default --num-workers starts DataLoader processes; tests decode in-process."""
    monkeypatch.setattr(cli, "_default_workers", lambda: 0)


def test_plugins_lists_every_kind_with_its_plugin(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "Backbones (" in out and "Augmentation policies (" in out and "Aggregations (" in out
    assert "resnet18_cifar" in out and "[repens_sklearn.backbones]" in out
    assert "gaussian_noise" in out and "[repens_sklearn.augment]" in out
    assert "repens plugins --filter PATTERN" in out and "repens plugins --all" in out


def test_plugins_filter(capsys):
    assert main(["plugins", "--filter", "resnet5*"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "resnet18" not in out and "Aggregations (0)" in out


@pytest.mark.slow
def test_console_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "repens_sklearn.cli", "plugins"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "mlp" in result.stdout


def _image_folder(root):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, base in [("dark", 40), ("light", 210)]:
        (root / cls).mkdir(parents=True)
        for i in range(4):
            arr = np.clip(base + rng.normal(0, 10, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode="L").save(root / cls / f"{i}.png")
    return root


def test_embed_writes_npy_with_file_list(tmp_path, capsys):
    import numpy as np

    folder = _image_folder(tmp_path / "imgs")
    out = tmp_path / "emb.npy"
    assert main(["embed", str(folder), "--backbone", "convnet_small", "-o", str(out)]) == 0
    emb = np.load(out)
    files = (tmp_path / "emb.files.txt").read_text().split()
    assert emb.shape == (8, 128) and len(files) == 8 and files[0].endswith("dark/0.png")
    assert np.isfinite(emb).all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_embed_with_tta_to_table_matches_library(tmp_path, suffix):
    import numpy as np
    import pandas as pd

    from repens_sklearn import MeanTTAEmbedder

    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    folder = _image_folder(tmp_path / "imgs")
    out = tmp_path / f"emb{suffix}"
    assert (
        main(
            [
                "embed",
                str(folder / "dark"),
                "--backbone",
                "mlp",
                "--policy",
                "crop_flip",
                "-S",
                "3",
                "--seed",
                "1",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(frame.columns[:2]) == ["file", "emb0"] and len(frame) == 4
    files = list(frame["file"])
    expected = MeanTTAEmbedder(
        "mlp", policy="crop_flip", n_augmentations=3, random_state=1, batch_size=64
    ).fit_transform(files)
    np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(), expected, rtol=1e-5, atol=1e-6)


def test_rank_prints_scores_best_first(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs")
    assert main(["rank", str(folder), "--candidate", "convnet_small", "--candidate", "mlp"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()[:2] in ("1.", "2.")]
    assert len(lines) == 2
    scores = [float(line.split()[-1]) for line in lines]
    assert scores[0] >= scores[1] and scores[0] == 1.0  # dark vs light is trivially separable


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["embed", "nowhere/", "--backbone", "mlp", "-o", "x.npy"],
            "path 'nowhere/' does not exist",
        ),
        (
            ["embed", "{folder}", "--backbone", "resnet19", "-o", "x.npy"],
            "Unknown backbone 'resnet19'",
        ),
        (
            ["embed", "{folder}", "--backbone", "mlp", "-o", "x.txt"],
            "must end in .npy, .csv or .parquet",
        ),
        (
            ["embed", "{folder}", "--backbone", "mlp", "--weights", "missing.pt", "-o", "x.npy"],
            "weights file 'missing.pt' does not exist",
        ),
        (["embed", "{broken}", "--backbone", "mlp", "-o", "x.npy"], "cannot read image"),
        (
            ["embed", "{folder}", "--backbone", "mlp", "-S", "4", "-o", "x.npy"],
            "--policy and -S/--n-augmentations go together",
        ),
        (
            ["embed", "{folder}", "--backbone", "mlp", "--policy", "crop_flip", "-o", "x.npy"],
            "--policy and -S/--n-augmentations go together",
        ),
        (["rank", "nowhere/", "--candidate", "mlp"], "does not exist"),
        (["rank", "{folder}", "--candidate", "nope"], "Unknown backbone 'nope'"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    folder = _image_folder(tmp_path / "imgs")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    argv = [a.format(folder=folder, broken=broken) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_parquet_without_pyarrow_fails_before_embedding(tmp_path, capsys, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("pyarrow", "fastparquet") else real_find_spec(name, *a),
    )
    folder = _image_folder(tmp_path / "imgs")
    monkeypatch.setattr(
        "repens_sklearn.embedders.MeanTTAEmbedder.fit_transform",
        lambda *a, **k: pytest.fail("embedded before checking the writer"),
    )
    assert main(["embed", str(folder), "--backbone", "mlp", "-o", str(tmp_path / "x.parquet")]) == 2
    assert "writing .parquet needs pyarrow: pip install pyarrow" in capsys.readouterr().err


# ------------------------------------------------------------- options and help
def test_version(capsys):
    from repens_sklearn import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"repens {__version__}"


def test_every_subcommand_has_a_description_and_every_option_help():
    import argparse

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == {"plugins", "embed", "rank", "demo"}
    for name, sub in commands.choices.items():
        assert sub.description, f"repens {name} --help has no description"
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"repens {name} {action.option_strings or action.dest}: no help"
    rank_help = commands.choices["rank"].format_help()
    assert "neighbours" in rank_help and "images per forward pass" in rank_help
    assert "Fashion-MNIST" in commands.choices["demo"].format_help()
    assert "seeds the random initial weights" in commands.choices["embed"].format_help()


# ------------------------------------------------------------------ repens plugins
def _never_built(in_chans=3, weights=None):  # pragma: no cover - listing builds nothing
    raise AssertionError("listing must not build backbones")


@pytest.fixture
def fake_timm(fresh_plugin_manager):
    """A plugin registered like repens-timm: many names under the prefix timm/."""
    from repens_sklearn import hookimpl

    names = ["resnet18", "resnet18d", "resnet50", "vit_small_patch16_224"]
    names += [f"efficientnet_b{i}" for i in range(20)]

    class Plugin:
        @hookimpl
        def repens_backbones(self):
            return {"timm/" + name: _never_built for name in names}

    fresh_plugin_manager.get_plugin_manager().register(Plugin(), name="timm")
    yield


def test_plugins_groups_by_plugin_with_counts(fake_timm, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 15  # not one line per name
    line = next(line for line in out.splitlines() if "[timm]" in line)
    assert " 24 " in line and "repens plugins --filter 'timm/*'" in line
    assert "timm/resnet18" not in out


def test_plugins_filter_matches_with_and_without_the_plugin_prefix(fake_timm, capsys):
    assert main(["plugins", "--filter", "resnet1*"]) == 0
    out = capsys.readouterr().out
    for name in ("resnet18_cifar", "timm/resnet18", "timm/resnet18d"):
        assert name in out
    assert "resnet50" not in out and "Backbones (4):" in out
    assert main(["plugins", "--filter", "ResNet50", "--filter", "timm/vit*"]) == 0
    out = capsys.readouterr().out
    assert "Backbones (3):" in out and "timm/vit_small_patch16_224" in out


def test_plugins_filter_line_that_ci_greps(fake_timm, capsys):
    import re

    assert main(["plugins", "--filter", "timm/resnet18"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"timm/resnet18 .*\[timm\]", out)  # .ci/run's check
    assert "timm/resnet18d" not in out


def test_plugins_all_lists_every_name(fake_timm, capsys):
    assert main(["plugins", "--all"]) == 0
    out = capsys.readouterr().out
    assert "timm/efficientnet_b19" in out and "mlp" in out and "gem" in out


def test_plugins_filter_without_match_says_how(capsys):
    assert main(["plugins", "--filter", "nothing*"]) == 0
    assert "no registered name matches 'nothing*'" in capsys.readouterr().out


@pytest.mark.slow
def test_plugins_output_cut_short_by_a_pipe_is_quiet():
    result = subprocess.run(
        f"{sys.executable} -m repens_sklearn.cli plugins --all | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.startswith("Backbones (") and result.stderr == ""


# ----------------------------------------------------------------- CLI words
@pytest.mark.parametrize(
    "argv,message,absent",
    [
        (
            ["embed", "{folder}", "--backbone", "resnet19", "-o", "x.npy"],
            "See them with: repens plugins --filter 'resnet*'",
            "list_backbones",
        ),
        (
            [
                "embed",
                "{folder}",
                "--backbone",
                "mlp",
                "--policy",
                "crop_flop",
                "-S",
                "2",
                "-o",
                "x.npy",
            ],
            "Unknown augmentation policy 'crop_flop' (--policy). Closest registered names: "
            "crop_flip",
            "policy_params",
        ),
        (
            ["embed", "{folder}", "--backbone", "mlp", "--aggregation", "means", "-o", "x.npy"],
            "Unknown aggregation 'means' (--aggregation)",
            "list_aggregations",
        ),
        (
            ["rank", "{folder}", "--candidate", "convnet_smal"],
            "Unknown backbone 'convnet_smal' (--candidate). Closest registered names: "
            "convnet_small",
            "list_backbones",
        ),
        (
            ["rank", "{folder}/dark/..", "--candidate", "mlp", "-k", "8"],
            "-k/--n-neighbors must be between 1 and 7",
            "n_neighbors=",
        ),
        (
            ["demo", "--dataset", "fashion-mnist", "--data-home", "{folder}"],
            "point --data-home at a folder holding the IDX files",
            "data_home=",
        ),
    ],
)
def test_messages_use_the_commands_words(tmp_path, capsys, argv, message, absent):
    folder = _image_folder(tmp_path / "imgs")
    argv = [a.format(folder=folder) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and absent not in err, err


def test_rank_one_class_folder_names_it(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs")
    import shutil

    shutil.rmtree(folder / "light")
    assert main(["rank", str(folder), "--candidate", "mlp"]) == 2
    err = capsys.readouterr().err
    assert "has one class, 'dark': repens rank needs at least two sub-folders" in err
    assert "np.int64" not in err


def test_embed_says_when_weights_are_random(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs")
    assert (
        main(["embed", str(folder), "--backbone", "mlp", "-q", "-o", str(tmp_path / "x.npy")]) == 0
    )
    err = capsys.readouterr().err
    assert (
        "backbone 'mlp' has no pretrained weights of its own and no --weights was given: "
        "using random weights (seeded by --seed 0)" in err
    )


def test_embed_passes_runtime_options_through(tmp_path, monkeypatch):
    seen = {}

    def fake_embed_files(embedder, paths, output, **kwargs):
        seen.update(embedder.get_params(), **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr("repens_sklearn._embed_files.embed_files", fake_embed_files)
    folder = _image_folder(tmp_path / "imgs")
    assert (
        main(
            [
                "embed",
                str(folder),
                "--backbone",
                "mlp",
                "--num-workers",
                "3",
                "--batch-size",
                "5",
                "--chunk-size",
                "7",
                "--resume",
                "--skip-unreadable",
                "--device",
                "cpu",
                "-o",
                str(tmp_path / "x.npy"),
            ]
        )
        == 130
    )
    assert seen["num_workers"] == 3 and seen["batch_size"] == 5 and seen["device"] == "cpu"
    assert seen["chunk_size"] == 7 and seen["resume"] is True and seen["on_error"] == "skip"


def test_embed_image_size_is_the_common_one_not_the_first_files(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    folder = _image_folder(tmp_path / "imgs")
    Image.new("L", (64, 40)).save(folder / "dark" / "00_big_first.png")
    out = tmp_path / "emb.npy"
    assert main(["embed", str(folder), "--backbone", "mlp", "-q", "-o", str(out)]) == 0
    manifest = (tmp_path / "emb.npy.manifest.json").read_text()
    assert '"input_shape": [\n    1,\n    8,\n    8\n   ]' in manifest
    assert np.load(out).shape == (9, 64)


# --------------------------------------------------------- unreadable, resume
def _truncated_jpeg(path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), mode="L").save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_embed_skip_unreadable_reports_and_leaves_the_file_out(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs")
    _truncated_jpeg(folder / "dark" / "2b.jpg")
    out = tmp_path / "emb.npy"
    argv = [
        "embed",
        str(folder),
        "--backbone",
        "convnet_small",
        "--chunk-size",
        "3",
        "-q",
        "-o",
        str(out),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 2  # the random-weights note and the one-line error
    assert "2b.jpg" in err and "truncated" in err and "The 1 of 3 chunks done are kept" in err
    assert "--skip-unreadable with --resume" in err and "on_error" not in err
    assert "2b.jpg' (file 4 of 9)" in err and "paths[" not in err

    assert main(argv + ["--skip-unreadable", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "wrote 8 x 128 embeddings" in captured.out
    assert "1 of 3 chunks from the interrupted run" in captured.out
    assert "1 unreadable file skipped: " in captured.err and "2b.jpg" in captured.err
    files = (tmp_path / "emb.files.txt").read_text().split()
    assert len(files) == 8 and not any(f.endswith("2b.jpg") for f in files)


def test_embed_refuses_to_discard_an_interrupted_run(tmp_path, capsys, monkeypatch):
    from repens_sklearn import MeanTTAEmbedder

    folder = _image_folder(tmp_path / "imgs")
    real, calls = MeanTTAEmbedder.transform, []

    def crash_on_second_chunk(self, X):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, X)

    monkeypatch.setattr(MeanTTAEmbedder, "transform", crash_on_second_chunk)
    argv = [
        "embed",
        str(folder),
        "--backbone",
        "mlp",
        "--chunk-size",
        "4",
        "-q",
        "-o",
        str(tmp_path / "emb.parquet"),
    ]
    assert main(argv) == 130
    assert "run the same command with --resume to continue" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(argv) == 2
    assert "(1 of 2 chunks done): pass --resume to continue it" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert main(argv + ["--resume"]) == 0
    assert "is already complete (8 x 64): nothing to do" in capsys.readouterr().out


@pytest.mark.slow
def test_killed_embed_resumes_to_the_uninterrupted_output(tmp_path):
    """A real kill (SIGKILL) half-way, then --resume: the bytes of an uninterrupted run."""
    import time

    import numpy as np
    from PIL import Image

    pytest.importorskip("pyarrow")
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(48):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), mode="L").save(
            folder / f"{i:03d}.png"
        )
    # a slow embedding (many views) so that the kill lands between chunks
    base = [
        sys.executable,
        "-m",
        "repens_sklearn.cli",
        "embed",
        str(folder),
        "--backbone",
        "convnet_small",
        "--policy",
        "crop_flip",
        "-S",
        "16",
        "--chunk-size",
        "4",
        "--num-workers",
        "0",
        "-q",
        "-o",
    ]
    reference = tmp_path / "ref.parquet"
    subprocess.run(base + [str(reference)], check=True, capture_output=True, timeout=600)

    out = tmp_path / "emb.parquet"
    parts = tmp_path / "emb.parquet.parts"
    proc = subprocess.Popen(base + [str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("part-*.npz"))) >= 3:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    n_done = len(list(parts.glob("part-*.npz")))
    assert 0 < n_done < 12, "the kill should land half-way"
    result = subprocess.run(
        base + [str(out), "--resume"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert f"{n_done} of 12 chunks from the interrupted run" in result.stdout
    assert out.read_bytes() == reference.read_bytes()


def test_dask_scheduler_without_dask_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails
    folder = _image_folder(tmp_path / "imgs")
    assert (
        main(
            [
                "embed",
                str(folder),
                "--backbone",
                "mlp",
                "--dask-scheduler",
                "tcp://x:1",
                "-q",
                "-o",
                str(tmp_path / "x.npy"),
            ]
        )
        == 2
    )
    assert (
        "--dask-scheduler needs Dask: pip install 'repens-sklearn[dask]'" in capsys.readouterr().err
    )


@pytest.mark.slow
def test_embed_on_a_dask_scheduler_gives_the_local_output(tmp_path):
    distributed = pytest.importorskip("distributed")
    folder = _image_folder(tmp_path / "imgs")
    argv = [
        "embed",
        str(folder),
        "--backbone",
        "convnet_small",
        "--policy",
        "crop_flip",
        "-S",
        "2",
        "--chunk-size",
        "3",
        "-q",
        "-o",
    ]
    assert main(argv + [str(tmp_path / "local.npy")]) == 0
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        assert (
            main(argv + [str(tmp_path / "dask.npy"), "--dask-scheduler", cluster.scheduler_address])
            == 0
        )
    assert (tmp_path / "dask.npy").read_bytes() == (tmp_path / "local.npy").read_bytes()
