import json

import pytest

from gemmaios.transcript import SCHEMA, TranscriptError, read_transcript, write_transcript


def header(**over):
    rec = {"type": "header", "schema": SCHEMA, "run_id": "r1", "started_at": "2026-11-24T10:00:00Z",
           "device": {"product_type": "iPhone18,2", "arch": "h18p"}, "bundle": {"name": "b"},
           "prompt_set": {"name": "builtin", "sha256": "x", "count": 1}, "trials": 1, "max_new_tokens": 4}
    rec.update(over)
    return rec


def prompt(**over):
    rec = {"type": "prompt", "trial": 0, "index": 0, "prompt_id": "p0", "prompt_ids": [2, 5, 9],
           "generated_ids": [7, 8, 9, 1], "prefill_tokens": 3, "prefill_seconds": 0.5,
           "decode_tokens": 3, "decode_seconds": 0.25, "thermal_state": "nominal"}
    rec.update(over)
    return rec


def test_roundtrip_and_rates(tmp_path):
    path = write_transcript(tmp_path / "t.jsonl", [header(), prompt(), {"type": "footer", "completed": True}])
    t = read_transcript(path, require_complete=True)
    assert t.complete and t.trials == [0]
    (p,) = t.trial(0)
    assert p.prefill_tok_s == pytest.approx(6.0) and p.decode_tok_s == pytest.approx(12.0)
    assert p.line == 2 and p.prefill_function is None


def test_the_prefill_function_a_prompt_ran_with_is_read(tmp_path):
    path = write_transcript(tmp_path / "t.jsonl", [header(), prompt(prefill_function="prefill_16"),
                                                   prompt(trial=1, prefill_function=None)])
    assert [p.prefill_function for p in read_transcript(path).prompts] == ["prefill_16", None]


def test_missing_footer_is_incomplete_not_an_error(tmp_path):
    t = read_transcript(write_transcript(tmp_path / "t.jsonl", [header(), prompt()]))
    assert not t.complete
    with pytest.raises(TranscriptError, match="no footer"):
        read_transcript(t.path, require_complete=True)


def test_the_apps_failure_record_is_read_and_ends_the_run(tmp_path):
    """The app's bench failed: its failure record (the reason, the prompt it was on) is the last record, the run
    is incomplete, `require_complete` names the reason, and `gemmaios bench` sees it while the app is on screen."""
    from gemmaios.contract import RECORD_FAILURE
    from gemmaios.device.runs import run_failure

    failure = {"type": RECORD_FAILURE, "reason": "clips/c0.safetensors: expected F32 [N]", "prompt_id": "clip-0",
               "trial": 0, "index": 1, "launch": 0, "t": 3.2}
    path = write_transcript(tmp_path / "t.jsonl", [header(), prompt(), failure])
    t = read_transcript(path)
    assert t.failure == failure and not t.complete and [p.prompt_id for p in t.prompts] == ["p0"]
    with pytest.raises(TranscriptError, match="no footer: the app's bench failed at prompt clip-0: clips/c0"):
        read_transcript(path, require_complete=True)
    assert run_failure(path.read_bytes()) == failure
    assert run_failure(json.dumps(header()).encode() + b"\n" + json.dumps(prompt()).encode()) is None  # under way
    path.write_text(path.read_text() + json.dumps(prompt(index=2)) + "\n")
    with pytest.raises(TranscriptError, match="prompt record after the app's failure record"):
        read_transcript(path)
    with pytest.raises(TranscriptError, match="failure record lacks 'reason'"):
        read_transcript(write_transcript(tmp_path / "u.jsonl", [header(), {"type": RECORD_FAILURE}]))


def test_truncated_last_line_names_its_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(header()) + "\n" + json.dumps(prompt())[:40])
    with pytest.raises(TranscriptError) as err:
        read_transcript(path)
    assert err.value.line == 2 and "truncated" in str(err.value)


@pytest.mark.parametrize(
    ("records", "line", "needle"),
    [
        ([prompt()], 1, "first record must be the header"),
        ([header(schema="other/9")], 1, "schema"),
        ([header(), prompt(generated_ids=[1, "x"])], 2, "token ids"),
        ([header(), prompt(decode_seconds=True)], 2, "decode_seconds"),
        ([header(), prompt(thermal_state="hot")], 2, "thermal_state"),
        ([header(), prompt(prefill_function=16)], 2, "prefill_function must be a function name or null"),
        ([header(), prompt(prefill_function="")], 2, "prefill_function must be a function name or null"),
        ([header(), {"type": "footer", "completed": True}, prompt()], 3, "after the footer"),
        ([header(), {"type": "mystery"}], 2, "unknown record type"),
        ([header(), {k: v for k, v in prompt().items() if k != "generated_ids"}], 2, "lacks 'generated_ids'"),
    ],
)
def test_malformed_records_are_line_precise(tmp_path, records, line, needle):
    path = write_transcript(tmp_path / "t.jsonl", records)
    with pytest.raises(TranscriptError) as err:
        read_transcript(path)
    assert err.value.line == line
    assert needle in str(err.value)


def test_blank_line_inside_is_rejected(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(header()) + "\n\n" + json.dumps(prompt()) + "\n")
    with pytest.raises(TranscriptError) as err:
        read_transcript(path)
    assert err.value.line == 2
