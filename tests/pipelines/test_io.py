"""Atomic outputs (pipelines.io): a file never replaces a directory, a killed run's staging is cleaned up by the
next one, several files are staged and renamed together."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from churn_pipeline.errors import UsageError
from churn_pipeline.pipelines.io import atomic_files, atomic_path, staging_dir, write_json, write_parquet

ROOT = Path(__file__).resolve().parents[2]


def _user_directory(path: Path) -> Path:
    path.mkdir()
    (path / "keep.txt").write_text("the user's data")
    (path / "sub").mkdir()
    (path / "sub" / "more.txt").write_text("more")
    return path


def _intact(path: Path) -> bool:
    return (path / "keep.txt").read_text() == "the user's data" and (path / "sub" / "more.txt").is_file()


def test_a_file_output_never_replaces_an_existing_directory(tmp_path):
    target = _user_directory(tmp_path / "scores.csv")
    refused = pytest.raises(UsageError, match=r"is a directory, but this output is a file")
    with refused as info, atomic_path(target) as tmp:
        tmp.write_text("a,b\n")
    assert info.value.exit_code == 4 and "the directory was left as it is" in str(info.value)
    assert _intact(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]  # no staging left


def test_a_file_output_says_so_up_front_and_nothing_runs(tmp_path):
    target = _user_directory(tmp_path / "scores.parquet")
    ran = []
    refused = pytest.raises(
        UsageError, match=r"scores\.parquet is a directory.*Nothing was written, nothing was deleted"
    )
    with refused, atomic_path(target, directory=False):
        ran.append(True)
    assert ran == [] and _intact(target)


@pytest.mark.parametrize("write", [lambda p: write_json({"a": 1}, p), lambda p: write_parquet(pa.table({"a": [1]}), p)])
def test_write_json_and_write_parquet_refuse_a_directory(tmp_path, write):
    target = _user_directory(tmp_path / "out")
    with pytest.raises(UsageError, match="is a directory"):
        write(target)
    assert _intact(target)


def test_a_directory_output_is_still_swapped_in_whole(tmp_path):
    target = tmp_path / "validated"
    target.mkdir()
    (target / "old.parquet").write_text("old")
    with atomic_path(target) as staged:
        staged.mkdir()
        (staged / "new.parquet").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validated"]


def test_the_staging_directory_has_one_fixed_name_per_target(tmp_path):
    target = tmp_path / "scores.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == staging_dir(target) == tmp_path / ".scores.csv.tmp"
        tmp.write_text("x")
    assert not staging_dir(target).exists()


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from churn_pipeline.pipelines.io import atomic_path
target = Path(sys.argv[1])
with atomic_path(target) as tmp:
    with open(tmp, "w") as f:
        f.write("customer_id\\n" + "x\\n" * 100_000)
        f.flush()
        Path(sys.argv[2]).write_text("writing")
        time.sleep(60)
"""


def test_what_a_killed_run_left_behind_is_removed_by_the_next_run(tmp_path):
    target, started = tmp_path / "scores.csv", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target), str(started)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the writer did not start"
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: no finally block runs
    finally:
        proc.kill()
        proc.wait(timeout=30)
    partial = staging_dir(target) / "scores.csv"
    assert partial.stat().st_size > 100_000 and not target.exists()  # what the killed run leaves

    with atomic_path(target) as tmp:
        assert list(tmp.parent.iterdir()) == []  # the leftover is gone before this run writes
        tmp.write_text("complete\n")
    assert target.read_text() == "complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "started"]


def test_staging_directories_of_earlier_versions_are_removed_but_not_others(tmp_path):
    target = tmp_path / "scores.csv"
    for name in (".scores.csv.k3j_h5g6.tmp", ".scores.csv.abcdefgh.tmp"):  # tempfile.mkdtemp names
        (tmp_path / name).mkdir()
        (tmp_path / name / "scores.csv").write_text("partial")
    (tmp_path / ".other.csv.abcdefgh.tmp").mkdir()  # another target's: a run of that target's own business
    (tmp_path / ".scores.csv.notes.tmp").mkdir()  # not a tempfile name
    with atomic_path(target) as tmp:
        tmp.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.csv.abcdefgh.tmp",
        ".scores.csv.notes.tmp",
        "scores.csv",
    ]


def test_a_second_writer_of_the_same_target_is_refused_while_the_first_runs(tmp_path):
    target = tmp_path / "scores.csv"
    with atomic_path(target) as first:
        first.write_text("first")
        with pytest.raises(UsageError, match="another run is writing"), atomic_path(target) as second:
            second.write_text("second")
        assert first.read_text() == "first"  # the refused run did not touch the first run's staged file
    assert target.read_text() == "first"


def test_atomic_files_renames_every_file_then_retires_and_removes(tmp_path):
    a, b, old, manifest = (tmp_path / n for n in ("s.part-0001.csv", "s.part-0002.csv", "s.part-0003.csv", "m.json"))
    old.write_text("stale part")
    manifest.write_text("old manifest")
    keep = _user_directory(tmp_path / "s.part-0004.csv")  # never deleted: a directory
    with atomic_files([a, b], retire=[manifest], remove=[old, keep], staging=tmp_path / "s.csv") as (ta, tb):
        assert ta.parent == staging_dir(tmp_path / "s.csv")
        ta.write_text("1")
        tb.write_text("2")
    assert a.read_text() == "1" and b.read_text() == "2"
    assert not old.exists() and not manifest.exists() and _intact(keep)
    assert not staging_dir(tmp_path / "s.csv").exists()


def test_atomic_files_renames_nothing_when_writing_fails(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("previous")
    with pytest.raises(OSError, match="disk full"), atomic_files([a, b], remove=[tmp_path / "c.csv"]) as (ta, _):
        ta.write_text("new")
        raise OSError("disk full")
    assert a.read_text() == "previous" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_atomic_files_refuses_a_directory_target_before_anything_is_written(tmp_path):
    target = _user_directory(tmp_path / "s.part-0002.csv")
    ran = []
    refused = pytest.raises(UsageError, match=r"s\.part-0002\.csv is a directory")
    with refused, atomic_files([tmp_path / "s.part-0001.csv", target]):
        ran.append(True)
    assert ran == [] and _intact(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.part-0002.csv"]
