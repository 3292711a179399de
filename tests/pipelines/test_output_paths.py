"""Output paths that are directories are refused before any work, and the directory is kept as it is."""

import subprocess
import sys


def test_score_out_pointed_at_a_directory_is_refused_and_the_directory_is_kept(tmp_path):
    out = tmp_path / "scores"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    run = subprocess.run(
        [sys.executable, "-m", "churn_pipeline", "score", "--data", str(tmp_path / "none"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 4, run.stdout + run.stderr
    message = " ".join((run.stdout + run.stderr).split())
    assert "is a directory" in message and "Nothing was written, nothing was deleted" in message
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]
