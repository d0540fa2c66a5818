import json
import subprocess
import sys

import pytest

from trainer.datavalidation import validate
from trainer.samples import write_sample_dataset


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "kind, scenario, algorithm",
    [
        ("pretrain", "llm/pretrain", None),
        ("sft_messages", "llm/sft", None),
        ("sft_alpaca", "llm/sft", None),
        ("preference", "llm/reward_model", None),
        ("preference", "llm/rl", "dpo"),
        ("prompts", "llm/rl", "grpo"),
        ("t2i", "t2i/finetune", None),
    ],
)
def test_it_accepts_the_sample_data_of_every_format(tmp_path, kind, scenario, algorithm):
    dest = write_sample_dataset(kind, tmp_path / ("images" if kind == "t2i" else "d.jsonl"), rows=5)
    report = validate(scenario, str(dest), algorithm=algorithm)
    assert report.ok, report.problems
    assert (report.rows, report.valid_rows, report.format) == (5, 5, kind)


def test_it_reports_corrupt_json_with_its_row_number(tmp_path):
    lines = ['{"text": "fine"}', '{"text": "broken', '{"text": "ok"}']
    path = write_lines(tmp_path / "d.jsonl", lines)
    report = validate("llm/pretrain", str(path))
    assert not report.ok
    assert [(p.row, p.field) for p in report.problems] == [(2, None)]
    assert "invalid JSON" in report.problems[0].problem
    assert (report.rows, report.valid_rows) == (3, 2)


def test_it_reports_a_missing_field(tmp_path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}]
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(r) for r in rows])
    report = validate("llm/reward_model", str(path))
    found = [(p.row, p.field, p.problem) for p in report.problems]
    assert found == [(2, "rejected", "missing field")]


def test_it_reports_empty_text(tmp_path):
    rows = [{"text": "fine"}, {"text": "fine"}, {"text": "   "}]
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(r) for r in rows])
    report = validate("llm/pretrain", str(path))
    assert [(p.row, p.field, p.problem) for p in report.problems] == [(3, "text", "empty text")]


def test_it_reports_a_wrong_type(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 7}]}]
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(r) for r in rows])
    report = validate("llm/sft", str(path))
    assert [(p.row, p.field) for p in report.problems] == [(1, "messages[1].content")]
    assert report.problems[0].problem == "must be a string, got number"


def test_it_reports_a_missing_image_file(tmp_path):
    folder = write_sample_dataset("t2i", tmp_path / "images", rows=4)
    (folder / "00002.png").unlink()
    report = validate("t2i/finetune", str(folder))
    assert [(p.row, p.field) for p in report.problems] == [(3, "file_name")]
    assert "image file not found: 00002.png" in report.problems[0].problem


def test_it_refuses_an_image_path_that_leaves_the_data_folder(tmp_path):
    folder = write_sample_dataset("t2i", tmp_path / "images", rows=1)
    write_lines(folder / "metadata.jsonl", [json.dumps({"file_name": "../x.png", "text": "a"})])
    report = validate("t2i/finetune", str(folder))
    assert "inside the data folder" in report.problems[0].problem


def test_a_folder_means_every_jsonl_inside_with_file_names_in_problems(tmp_path):
    write_sample_dataset("pretrain", tmp_path / "a.jsonl", rows=3)
    write_lines(tmp_path / "b.jsonl", ['{"text": ""}'])
    report = validate("llm/pretrain", str(tmp_path))
    assert report.rows == 4
    assert str(report.problems[0]) == "b.jsonl: row 1, field 'text': empty text"


def test_rl_data_is_checked_against_the_algorithm_format(tmp_path):
    prompts = write_sample_dataset("prompts", tmp_path / "p.jsonl", rows=3)
    assert validate("llm/rl", str(prompts), algorithm="grpo").ok
    assert validate("llm/rl", str(prompts)).format == "prompts"  # detected without an algorithm
    report = validate("llm/rl", str(prompts), algorithm="dpo")
    assert not report.ok and report.problems[0].field in ("chosen", "rejected")


def test_it_reports_no_data_for_a_missing_path(tmp_path):
    report = validate("llm/sft", str(tmp_path / "nothing.jsonl"))
    assert not report.ok and "no data found" in report.problems[0].problem


def test_it_gives_token_length_statistics_with_a_tokenizer(tmp_path, tiny_llm):
    path = write_sample_dataset("sft_messages", tmp_path / "d.jsonl", rows=10)
    stats = validate("llm/sft", str(path), tokenizer_path=str(tiny_llm)).token_lengths
    assert stats["count"] == 10
    assert 5 < stats["min"] <= stats["p50"] <= stats["p95"] <= stats["max"] < 200


def test_the_cli_exits_non_zero_and_prints_row_numbers(tmp_path, repo_root):
    path = write_lines(tmp_path / "d.jsonl", ['{"text": "ok"}', "not json"])
    command = [
        sys.executable,
        "-m",
        "trainer",
        "validate-data",
        "--scenario",
        "llm/pretrain",
        "--path",
        str(path),
    ]
    out = subprocess.run(command, cwd=repo_root, capture_output=True, text=True)
    assert out.returncode == 1
    assert "row 2: invalid JSON" in out.stdout
    as_json = subprocess.run([*command, "--json"], cwd=repo_root, capture_output=True, text=True)
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["problems"][0]["row"] == 2


def test_the_cli_exits_zero_for_good_data(tmp_path, repo_root):
    path = write_sample_dataset("preference", tmp_path / "d.jsonl", rows=3)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            "validate-data",
            "--scenario",
            "llm/rl",
            "--algorithm",
            "dpo",
            "--path",
            str(path),
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 valid, ok" in out.stdout


# Bad files a user uploads (issue 11, item 11): each gets a clear report, never a traceback.


def test_a_deeply_nested_row_is_reported_not_raised(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine"}\n' + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    report = validate("llm/pretrain", str(path))
    assert [(p.row, p.problem) for p in report.problems] == [
        (2, "the row is nested more than 100 levels deep")
    ]
    assert report.valid_rows == 1


def test_a_nul_byte_in_an_image_name_is_a_row_problem(tmp_path):
    folder = write_sample_dataset("t2i", tmp_path / "images", rows=3)
    metadata = folder / "metadata.jsonl"
    lines = metadata.read_text(encoding="utf-8").splitlines()
    lines[1] = json.dumps({"file_name": "a\x00.png", "text": "a cat"})
    metadata.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = validate("t2i/finetune", str(folder))
    assert [(p.row, p.field) for p in report.problems] == [(2, "file_name")]
    assert "NUL" in report.problems[0].problem
    assert report.valid_rows == 2


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_named_as_such(tmp_path, encoding):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "一"}\n{"text": "二"}\n', encoding=encoding)
    report = validate("llm/pretrain", str(path))
    assert [p.problem for p in report.problems] == [
        "the file is UTF-16 text, not UTF-8: save it as UTF-8"
    ]
    assert report.valid_rows == 0


def test_a_latin1_file_is_not_silently_accepted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes('{"text": "plain"}\n{"text": "café"}\n'.encode("latin-1"))
    report = validate("llm/pretrain", str(path))
    assert [p.row for p in report.problems] == [2]
    assert report.problems[0].problem.startswith("the file is not UTF-8")
    assert report.valid_rows == 1


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "一"}\n{"text": "二"}\n', encoding="utf-8-sig")
    report = validate("llm/pretrain", str(path))
    assert report.ok and report.valid_rows == 2


def test_a_csv_file_gets_a_hint(tmp_path):
    path = write_lines(tmp_path / "chat.csv", ["role,content", "user,hello", "assistant,hi"])
    report = validate("llm/sft", str(path))
    assert not report.ok
    assert report.problems[0].row is None
    assert report.problems[0].problem.startswith("the file looks like CSV, not JSON Lines")


def test_a_json_error_points_where_the_row_broke(tmp_path):
    lines = ['{"text": "fine"}', '{"text": "open string', '{"text": "a",, "b": 1}']
    report = validate("llm/pretrain", str(write_lines(tmp_path / "d.jsonl", lines)))
    problems = [p.problem for p in report.problems]
    assert problems[0] == "invalid JSON: a string opened at column 10 is not closed by column 21"
    assert problems[1] == (
        "invalid JSON: Expecting property name enclosed in double quotes at column 14"
    )


def test_rl_data_takes_the_format_most_rows_have(tmp_path):
    prompt_rows = [{"prompt": f"question {n}"} for n in range(4)]
    first = {"prompt": "p", "chosen": "a"}  # a broken preference pair, first in the file
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(r) for r in [first, *prompt_rows]])
    report = validate("llm/rl", str(path))
    assert report.format == "prompts"
    assert (report.valid_rows, report.problem_count) == (5, 0)


def test_rl_data_of_preference_pairs_reports_the_rows_that_are_not(tmp_path):
    pairs = [{"prompt": f"p{n}", "chosen": "a", "rejected": "b"} for n in range(4)]
    rows = [{"prompt": "lonely"}, *pairs]
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(r) for r in rows])
    report = validate("llm/rl", str(path))
    assert report.format == "preference"
    assert [(p.row, p.field) for p in report.problems] == [(1, "chosen"), (1, "rejected")]


def test_a_number_of_thousands_of_digits_is_a_row_problem(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "x", "n": ' + "1" * 5000 + "}\n", encoding="utf-8")
    report = validate("llm/pretrain", str(path))
    assert [(p.row, p.problem) for p in report.problems] == [
        (2, "invalid JSON: a number has too many digits")
    ]


def test_an_unpaired_surrogate_is_a_row_problem_and_the_report_stays_utf8(tmp_path):
    folder = write_sample_dataset("t2i", tmp_path / "images", rows=2)
    metadata = folder / "metadata.jsonl"
    lines = metadata.read_text(encoding="utf-8").splitlines()
    lines.append('{"file_name": "\\udc80.png", "text": "a cat"}')
    metadata.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = validate("t2i/finetune", str(folder))
    assert [(p.row, p.field) for p in report.problems] == [(3, "file_name")]
    json.dumps(report.to_dict()).encode("utf-8")  # storable: no lone surrogate left


def test_a_file_linking_out_of_its_folder_is_not_read(tmp_path):
    import os

    secret = write_sample_dataset("pretrain", tmp_path / "elsewhere" / "secret.jsonl", rows=3)
    folder = tmp_path / "mine"
    write_sample_dataset("pretrain", folder / "a.jsonl", rows=2)
    os.symlink(secret, folder / "b.jsonl")
    report = validate("llm/pretrain", str(folder))
    assert report.rows == 2
    assert [p.problem for p in report.problems] == [
        "b.jsonl links to a file outside the data folder; it is not read"
    ]


def test_old_mac_line_endings_split_rows(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "one"}\r{"text": "two"}\r\n{"text": "three"}\n')
    report = validate("llm/pretrain", str(path))
    assert report.ok and report.rows == 3


# Validating again reads only what changed (trainer/fingerprint.py).


def _shards(folder, count=3):
    folder.mkdir()
    for index in range(count):
        write_sample_dataset("sft_messages", folder / f"part-{index}.jsonl", rows=4, seed=index)
    return folder


def _reading(monkeypatch):
    """The data files the validator parses from here on."""
    from trainer import datavalidation

    parsed = []
    real = datavalidation.file_rows

    def spy(file, meter=None):
        parsed.append(file.name)
        return real(file, meter)

    monkeypatch.setattr(datavalidation, "file_rows", spy)
    return parsed


def test_validating_again_parses_only_the_files_that_changed(tmp_path, monkeypatch):
    folder = _shards(tmp_path / "shards")
    first = validate("llm/sft", str(folder))
    assert first.ok and first.rows == 12
    with (folder / "part-1.jsonl").open("a") as handle:
        handle.write('{"messages": "not a list"}\n')
    parsed = _reading(monkeypatch)
    again = validate("llm/sft", str(folder), previous=first.fingerprint)
    assert parsed == ["part-1.jsonl"]
    assert again.to_dict() == validate("llm/sft", str(folder)).to_dict()
    assert not again.ok and [(p.file, p.row) for p in again.problems] == [("part-1.jsonl", 5)]


def test_a_file_touched_but_not_changed_is_hashed_not_parsed(tmp_path, monkeypatch):
    import os

    folder = _shards(tmp_path / "shards")
    first = validate("llm/sft", str(folder))
    os.utime(folder / "part-0.jsonl", ns=(1, 1))
    parsed = _reading(monkeypatch)
    again = validate("llm/sft", str(folder), previous=first.fingerprint)
    assert parsed == []
    assert again.to_dict() == first.to_dict()
    assert again.fingerprint["files"]["part-0.jsonl"]["stat"][1] == 1


def test_a_file_added_or_removed_is_seen(tmp_path, monkeypatch):
    folder = _shards(tmp_path / "shards")
    first = validate("llm/sft", str(folder))
    write_sample_dataset("sft_messages", folder / "part-9.jsonl", rows=2, seed=9)
    (folder / "part-0.jsonl").unlink()
    parsed = _reading(monkeypatch)
    again = validate("llm/sft", str(folder), previous=first.fingerprint)
    assert parsed == ["part-9.jsonl"] and again.rows == 10
    assert sorted(again.fingerprint["files"]) == ["part-1.jsonl", "part-2.jsonl", "part-9.jsonl"]


def test_a_replaced_image_has_its_rows_checked_again(tmp_path):
    folder = write_sample_dataset("t2i", tmp_path / "images", rows=3)
    first = validate("t2i/finetune", str(folder))
    assert first.ok
    image = sorted(folder.glob("*.png"))[0]
    image.write_bytes(b"not a png any more")
    again = validate("t2i/finetune", str(folder), previous=first.fingerprint)
    assert not again.ok and "unreadable image" in again.problems[0].problem


def test_a_report_read_for_another_format_is_a_fresh_one_for_its_algorithm(tmp_path):
    from trainer.datavalidation import formats_for, report_for

    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "q", "chosen": "c", "rejected": "d"},
        {"prompt": "   "},
        {"chosen": "x"},
    ]
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(r) for r in rows])
    kept = validate("llm/rl", str(path)).to_dict()
    for algorithm in ("dpo", "grpo"):
        fresh = validate("llm/rl", str(path), algorithm=algorithm).to_dict()
        read = report_for(kept, formats_for("llm/rl", algorithm))
        fields = ("ok", "format", "valid_rows", "problem_count", "problems")
        assert {f: read[f] for f in fields} == {f: fresh[f] for f in fields}, algorithm
    assert report_for(kept, ("pretrain",)) is None


def test_the_same_files_at_another_place_are_read_again(tmp_path, monkeypatch):
    import shutil

    from trainer import fingerprint

    folder = _shards(tmp_path / "shards")
    first = validate("llm/sft", str(folder))
    copy = shutil.copytree(folder, tmp_path / "copy")  # sizes and times kept
    files = sorted(copy.glob("*.jsonl"))
    assert not fingerprint.unchanged(first.fingerprint, copy, files, images=False)
    parsed = _reading(monkeypatch)
    validate("llm/sft", str(copy), previous=first.fingerprint)
    assert sorted(parsed) == ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl"]
