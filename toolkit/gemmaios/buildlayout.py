"""Every path inside a build folder, named once (docs/contracts.md).

A leaf module: the steps, the device and report code and the CLI take these names from here (the
modules that used to define some of them re-export them), so a folder's layout is read in one place.
What each step records about the files it wrote is in steprecords; which bundle name the convert
step picks is in bundlename.
"""

from __future__ import annotations

MANIFEST_NAME = "build.json"  # the manifest: options and one typed record per step (pipeline.Manifest)
LOG_NAME = "gemmaios.log"  # third-party warnings and native runtime output of the build's steps (quiet.py)
CHECKPOINT_RECORD = "checkpoint.json"  # the checkpoint step's description of what it resolved
TINY_CHECKPOINT_DIR = "checkpoint"  # a tiny build's own checkpoint (gemmaios.tiny)
TABLES_DIR = "tables"  # the int8 per-layer embedding table, its scales and sidecar
ORACLE_FILE = "oracle/oracle.json"  # the fp32 reference generations
IMAGE_ORACLE_DIR = "oracle/images"  # the image prompts' reference (vision builds)
AUDIO_ORACLE_DIR = "oracle/audio"  # the audio prompts' reference (E2B/E4B --audio builds)
BUNDLES_DIR = "bundle"  # bundle/<bundle name>/: the converted LanguageBundle
APP_DIR = "app"  # app/<App name>/: the rendered Xcode project
ENGINE_DIR = "engine"  # engine/coreai-models/: the patched engine package the project references
SIGN_DIR = "sign"  # sign/: ExportOptions.plist and export/<App>.ipa
FASTLANE_IPA_DIR = "ipa"  # ipa/<App>.ipa: what `fastlane ios dev_build` exports
BUILD_RUNS_DIR = "runs"  # runs/<run id>-<udid or host>/: pulled device logs and host benches
XCTEST_RUNS_DIR = "xctest-runs"  # xctest-runs/<run id>/: transcripts from `xcodebuild test` benches
DEPLOY_RECORD = "deploy.json"  # what deploy installed, per device (bench reads it)
FARM_DIR = "farm"  # farm/: AWS Device Farm uploads and results
CACHE_DIR = ".gemmaios-cache"  # hashes of the payload files, by size and mtime
REPORTS_DIR = "reports"  # reports/: `gemmaios report`'s Markdown/HTML/JSON (xctest-<run id>/ for XCTest benches)
SIGNED_PRODUCTS = f"{SIGN_DIR}/xctest"  # sign/xctest/: build-for-testing's Build/Products (xctest.PRODUCTS_DIR)
