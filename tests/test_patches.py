"""The coreai-models patch stack: series integrity, order, idempotence, atomic refusal.

The fixture tree is rebuilt from the patches' own pre-image (patches.reconstruct_preimage),
so these tests need neither network nor the upstream checkout; when a local mirror of
apple/coreai-models is present the stack is also applied to the real pinned files.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from gemmaios.patches import (
    EngineSourceUnavailable,
    PatchError,
    applied_count,
    apply_series,
    load_series,
    locate_pinned_source,
    parse_patch,
    prepare_engine_package,
    reconstruct_preimage,
)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts}


@pytest.fixture(scope="module")
def series():
    return load_series()


@pytest.fixture
def fixture_tree(tmp_path, series) -> Path:
    """A git repo holding the stack's pre-image (committed, so `git status` shows any change)."""
    root = tmp_path / "coreai-models"
    for rel, text in reconstruct_preimage(series).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pre"],
                   check=True)
    return root


def test_series_pins_a_commit_and_the_required_hooks(series):
    assert len(series.base) == 40 and series.upstream.endswith("coreai-models.git")
    names = [p.name for p in series.patches]
    assert names == sorted(names) and len(names) >= 2
    added = "\n".join(text for p in series.patches for fp in p.files for h in fp.hunks
                      for tag, text in h.lines if tag == "+")
    assert "public var staticInputBuffers: [String: StaticInputBuffer]" in added
    assert "public var perTokenInputProvider: PerTokenInputProvider?" in added
    for patch in series.patches:
        assert hashlib.sha256(patch.path.read_bytes()).hexdigest() == patch.sha256
        for fp in patch.files:  # minimal context: at most 1 line each side of a change block
            for hunk in fp.hunks:
                assert hunk.lines[0][0] != " " or hunk.lines[1][0] != " ", hunk.header


def test_tampered_patch_is_refused(tmp_path, series):
    copy = tmp_path / "patches"
    shutil.copytree(series.directory, copy)
    patch = copy / series.patches[0].name
    patch.write_text(patch.read_text().replace("static shape", "static  shape", 1))
    with pytest.raises(PatchError, match=f"{series.patches[0].name} has sha256"):
        load_series(copy)


def test_stack_applies_in_order_then_is_detected_as_applied(fixture_tree, series):
    before = tree_digest(fixture_tree)
    assert applied_count(fixture_tree, series) == 0
    result = apply_series(fixture_tree, series)
    assert result.applied == [p.name for p in series.patches] and result.already == []
    after = tree_digest(fixture_tree)
    assert after != before and set(after) == set(before)
    engine = (fixture_tree / series.touched_files[0]).read_text()
    assert "case perToken(MTLBuffer)" in engine and "case staticBuffer(MTLBuffer)" in engine
    # re-applying is recognised, not applied twice
    again = apply_series(fixture_tree, series)
    assert again.applied == [] and again.already == [p.name for p in series.patches]
    assert tree_digest(fixture_tree) == after
    assert engine.count("case perToken(MTLBuffer)") == 1


def test_partially_patched_tree_gets_the_rest(fixture_tree, series):
    first = replace(series, patches=series.patches[:1])
    apply_series(fixture_tree, first)
    assert applied_count(fixture_tree, series) == 1
    result = apply_series(fixture_tree, series)
    assert result.already == [series.patches[0].name] and result.applied == [p.name for p in series.patches[1:]]


def test_order_matters(fixture_tree, series):
    # 0002 builds on 0001's extra-input plumbing: swapped, 0002 is refused first
    swapped = replace(series, patches=[series.patches[1], series.patches[0], *series.patches[2:]])
    before = tree_digest(fixture_tree)
    # Nothing of a refused series is kept, whichever patch is refused first.
    with pytest.raises(PatchError) as err:
        apply_series(fixture_tree, swapped)
    assert any(f"patch {p.name}: hunk" in str(err.value) for p in series.patches[1:])
    assert tree_digest(fixture_tree) == before


def test_broken_tree_is_refused_atomically_naming_patch_file_and_hunk(fixture_tree, series):
    patch = series.patches[0]
    target = patch.files[-1]  # the last file 0001 touches: earlier files would apply cleanly
    hunk = target.hunks[-1]
    path = fixture_tree / target.path
    lines = path.read_text().splitlines(keepends=True)
    anchor = hunk.old_start - 1 + next(i for i, (tag, text) in enumerate(
        [t for t in hunk.lines if t[0] != "+"]) if text.strip())
    lines[anchor] = "// edited by someone\n"
    path.write_text("".join(lines))
    before = tree_digest(fixture_tree)
    with pytest.raises(PatchError) as err:
        apply_series(fixture_tree, series)
    message = str(err.value)
    assert patch.name in message and target.path in message and f"hunk #{hunk.index}" in message
    assert tree_digest(fixture_tree) == before
    status = subprocess.run(["git", "-C", str(fixture_tree), "status", "--porcelain"], capture_output=True,
                            text=True).stdout
    assert status.strip() == f"M {target.path}"  # only our own edit


def test_failing_later_patch_leaves_earlier_ones_unapplied(tmp_path, fixture_tree, series):
    copy = tmp_path / "patches"
    shutil.copytree(series.directory, copy)
    rel = series.touched_files[0]
    broken = (f"diff --git a/{rel} b/{rel}\n--- a/{rel}\n+++ b/{rel}\n"
              "@@ -3,2 +3,3 @@\n this line\n+new\n is not there\n")
    (copy / "0099-broken.patch").write_text(broken)
    digest = hashlib.sha256(broken.encode()).hexdigest()
    with open(copy / "series", "a") as fh:
        fh.write(f"patch 0099-broken.patch {digest}\n")
    extended = load_series(copy)
    before = tree_digest(fixture_tree)
    with pytest.raises(PatchError, match=r"0099-broken\.patch: hunk #1 \(@@ -3,2 \+3,3 @@\)"):
        apply_series(fixture_tree, extended)
    assert tree_digest(fixture_tree) == before


def test_parse_patch_reads_files_and_hunks(series):
    files = parse_patch(series.patches[1].path.read_text())
    assert [f.path.rsplit("/", 1)[-1] for f in files] == ["CoreAIPipelinedEngine.swift", "EngineFactory.swift"]
    assert all(h.index == i + 1 for f in files for i, h in enumerate(f.hunks))


def test_prepare_engine_package_from_a_user_checkout(tmp_path, fixture_tree, series):
    source = locate_pinned_source(series, fixture_tree, tmp_path / "cache", allow_clone=False)
    dest = tmp_path / "build" / "engine" / "coreai-models"
    result = prepare_engine_package(dest, series, source)
    assert result.applied == [p.name for p in series.patches]
    assert (dest / ".gemmaios-engine").read_text().startswith(f"base {series.base}\n")
    assert "perTokenInputProvider" in (dest / series.touched_files[1]).read_text()
    assert applied_count(fixture_tree, series) == 0  # the user's checkout is not modified
    assert not (dest / ".git").exists()


def test_missing_checkout_names_the_clone_command(tmp_path, series):
    with pytest.raises(EngineSourceUnavailable) as err:
        locate_pinned_source(series, None, tmp_path / "cache", allow_clone=False)
    assert series.base in err.value.command and "git clone" in err.value.command


def test_stack_applies_to_the_real_pinned_commit(tmp_path, series, pinned_engine):
    dest = tmp_path / "engine"
    result = prepare_engine_package(dest, series, pinned_engine.root)
    assert result.applied == [p.name for p in series.patches]
    assert (dest / "Package.swift").is_file()


SWIFTC = shutil.which("swiftc") or next((p for p in ("/opt/swift/usr/bin/swiftc",) if Path(p).is_file()), None)


def test_prefill_patch_adds_the_option_and_routes_full_chunks(series):
    """0004: EngineOptions.prefillFunction, validated and loaded at init, full chunks routed to it,
    per-token inputs filled into C consecutive slots; its context lines are all upstream's own."""
    patch = next(p for p in series.patches if p.name.startswith("0004-"))
    added = "\n".join(text for fp in patch.files for h in fp.hunks for tag, text in h.lines if tag == "+")
    assert "public var prefillFunction: String? = nil" in added
    assert "model.functionDescriptor(for: prefillName)" in added and "model.loadFunction(named: prefillName)" in added
    assert "while remainingTokens.count > prefill.chunk" in added  # the last token stays a sampling main step
    assert "try provider(input.name, token, processedTokenCount + i, destination)" in added
    earlier = "\n".join(text for p in series.patches if p.name < "0004" for fp in p.files for h in fp.hunks
                        for tag, text in h.lines if tag == "+")
    for fp in patch.files:
        for hunk in fp.hunks:
            for tag, text in hunk.lines:
                if tag == " " and text.strip():
                    assert text not in earlier, f"0004 context line {text!r} comes from an earlier patch"


@pytest.mark.skipif(SWIFTC is None, reason="no Swift toolchain")
def test_patched_engine_files_parse_with_swiftc(tmp_path, series, pinned_engine):
    dest = tmp_path / "engine"
    prepare_engine_package(dest, series, pinned_engine.root)
    touched = sorted(series.touched_files)
    assert any(path.endswith("CoreAIPipelinedEngine.swift") for path in touched)
    for path in touched:
        result = subprocess.run([SWIFTC, "-parse", str(dest / path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{path}: {result.stderr[-2000:]}"
