"""data/prepare_*.py and the ucf101/hmdb51/kinetics datasets on small fixture trees (nothing downloaded)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from data_fixtures import pattern_frames, write_video

from timesformer_lite.config import load_config
from timesformer_lite.data import AnnotationError, build_dataset, read_classes, read_list

REPO = Path(__file__).resolve().parents[1]


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "data" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clip") / "c.mp4", pattern_frames(10, 64, 48))


def place(root: Path, rel: str, clip: Path) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, root / rel)


def ucf_tree(root: Path, clip: Path) -> Path:
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    train = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1", "HandStandPushups/v_HandStandPushups_g08_c01.avi 2"]
    train.append("YoYo/v_YoYo_g09_c02.avi 3")
    (lists / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n")  # the official files use CRLF
    (lists / "testlist01.txt").write_text("HandStandPushups/v_HandStandPushups_g01_c01.avi\nYoYo/v_YoYo_g01_c01.avi\n")
    for line in train + ["HandStandPushups/v_HandStandPushups_g01_c01.avi", "YoYo/v_YoYo_g01_c01.avi"]:
        place(root / "UCF-101", line.split()[0], clip)
    return root


def test_prepare_ucf101_writes_lists_with_0_based_labels(tmp_path, clip, capsys):
    root = ucf_tree(tmp_path / "ucf", clip)
    assert script("prepare_ucf101").main([str(root)]) == 0
    assert "3 classes; train 3, val 2, test 2" in capsys.readouterr().out
    assert read_classes(root / "classes.txt") == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert read_list(root / "train.txt") == [
        ("UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
        ("UCF-101/HandStandPushups/v_HandStandPushups_g08_c01.avi", 1),
        ("UCF-101/YoYo/v_YoYo_g09_c02.avi", 2),
    ]
    assert [label for _, label in read_list(root / "test.txt")] == [1, 2]  # from the folder, case-insensitive
    cfg = load_config("smoke", {"data.dataset": "ucf101", "data.root": str(root), "model.num_classes": 3})
    ds = build_dataset(cfg, "test")
    assert ds.labels == [1, 2] and ds[0]["video"].shape == (1, 4, 3, 32, 32)


def test_ucf101_label_disagreeing_with_folder_names_the_line(tmp_path, clip):
    root = ucf_tree(tmp_path / "ucf", clip)
    (root / "ucfTrainTestlist/trainlist01.txt").write_text("YoYo/v_YoYo_g09_c02.avi 3\nYoYo/v_YoYo_g10_c02.avi 1\n")
    with pytest.raises(AnnotationError, match=r"trainlist01.txt:2: label 1 \(1-based\) disagrees with folder 'yoyo'"):
        script("prepare_ucf101").main([str(root)])


def test_prepare_hmdb51_uses_flags_1_train_2_test(tmp_path, clip, capsys):
    root = tmp_path / "hmdb"
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "wave_test_split1.txt").write_text("d.avi 2 \ne.avi 1 \n")
    (splits / "wave_test_split2.txt").write_text("d.avi 1 \ne.avi 2 \n")
    for rel in ("brush_hair/a.avi", "brush_hair/b.avi", "brush_hair/c.avi", "wave/d.avi"):
        place(root / "hmdb51_org", rel, clip)  # wave/e.avi is missing on disk
    assert script("prepare_hmdb51").main([str(root)]) == 0
    assert "2 classes; train 1 (1 missing files left out), val 2, test 2" in capsys.readouterr().out
    assert read_list(root / "train.txt") == [("hmdb51_org/brush_hair/a.avi", 0)]
    assert read_list(root / "test.txt") == [("hmdb51_org/brush_hair/b.avi", 0), ("hmdb51_org/wave/d.avi", 1)]
    (splits / "wave_test_split1.txt").write_text("d.avi 2\ne.avi\n")
    with pytest.raises(AnnotationError, match=r"wave_test_split1.txt:2: expected 'name.avi 0\|1\|2', got 'e.avi'"):
        script("prepare_hmdb51").main([str(root)])


def kinetics_tree(root: Path, clip: Path) -> Path:
    ann = root / "annotations"
    ann.mkdir(parents=True)
    head = "label,youtube_id,time_start,time_end,split,is_cc\n"
    (ann / "train.csv").write_text(
        head + '"abseiling",aaa,10,20,train,0\n"air drumming",bbb,0,10,train,0\n"abseiling",ccc,5,15,train,0\n'
    )
    (ann / "validate.csv").write_text(head + '"air drumming",ddd,30,40,val,0\n"abseiling",eee,1,11,val,0\n')
    place(root, "train/abseiling/aaa_000010_000020.mp4", clip)  # in a label folder
    place(root, "train/bbb_000000_000010.mp4", clip)  # flat
    place(root, "validate/ddd.mp4", clip)  # youtube id only; ccc and eee are missing
    return root


def test_prepare_kinetics_matches_csv_rows_to_clips_and_counts_missing(tmp_path, clip, capsys):
    root = kinetics_tree(tmp_path / "k400", clip)
    assert script("prepare_kinetics").main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "2 classes; train 2, val 1, test 1" in out and "left out): train 1, val 1" in out
    assert read_classes(root / "classes.txt") == ["abseiling", "air drumming"]
    assert read_list(root / "train.txt") == [
        ("train/abseiling/aaa_000010_000020.mp4", 0),
        ("train/bbb_000000_000010.mp4", 1),
    ]
    assert read_list(root / "test.txt") == [("validate/ddd.mp4", 1)]


def test_kinetics_dataset_reads_the_csvs_directly(tmp_path, clip):
    root = kinetics_tree(tmp_path / "k400", clip)
    cfg = load_config("smoke", {"data.dataset": "kinetics", "data.root": str(root), "data.test_sampling": "dense"})
    with pytest.warns(RuntimeWarning, match="Kinetics val: 1 of 2 clips in the CSV are not under"):
        ds = build_dataset(cfg, "val")
    assert ds.classes == ["abseiling", "air drumming"] and ds.labels == [1]
    assert ds[0]["video"].shape == (4, 3, 32, 32)
    (root / "annotations/train.csv").write_text("label,youtube_id\nabseiling,aaa\n")
    with pytest.raises(AnnotationError, match=r"train.csv:1: Kinetics CSV needs columns label, time_end"):
        build_dataset(cfg, "train")
