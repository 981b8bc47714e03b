#!/usr/bin/env python3
"""TEST STAND-IN for Apple's `xcrun devicectl` -- NOT Apple's tool. The stand-in `xcrun` hands
`xcrun devicectl ...` here. It accepts only the subcommands and options gemmaios uses (the
spelling of Xcode's devicectl as public scripts call it), refuses anything else, and does the
work for real through pymobiledevice3 against whatever usbmuxd `USBMUXD_SOCKET_ADDRESS`
names -- in the tests the loopback device simulator (tests/devicesim), so an install really
unpacks the .ipa on the simulated phone and a launch really starts the app stand-in.

It writes `--json-output` in devicectl's shape: `{"info": {..., "outcome"}, "result": {...}}`,
or on failure `{"error": {"code", "domain", "userInfo"}, "info": {... "outcome": "failed"}}`
with userInfo values wrapped as `{"string": ...}` and the cause under `NSUnderlyingError`,
prints `ERROR: ...` to stderr and exits 1. The failure codes and texts follow public reports
of devicectl's output (device not found 1000, launch refused 10002 with a `Locked` /
`Security` reason, install failed 3002 with the `LegacyErrorString`); the error for copying
a file that does not exist is this stand-in's guess. It insists on `--json-output`, which
the real tool only offers.
"""
import asyncio
import json
import sys
import traceback
import uuid
from pathlib import Path

VERSION = "0.0-gemmaios-test-stand-in"
CORE = "com.apple.dt.CoreDeviceError"

# subcommand words → (options taking a value, flags, whether positional arguments are allowed)
COMMANDS = {
    ("list", "devices"): ({"--json-output", "--timeout"}, {"--quiet"}, False),
    ("device", "install", "app"): ({"--device", "--json-output", "--timeout"}, {"--quiet"}, True),
    ("device", "process", "launch"): ({"--device", "--json-output", "--timeout", "--environment-variables"},
                                      {"--terminate-existing", "--quiet", "--activate", "--start-stopped"}, True),
    ("device", "info", "processes"): ({"--device", "--json-output", "--timeout"}, {"--quiet"}, False),
    ("device", "process", "signal"): ({"--device", "--json-output", "--timeout", "--pid", "--signal"}, {"--quiet"},
                                      False),
    ("device", "copy", "from"): ({"--device", "--json-output", "--timeout", "--domain-type", "--domain-identifier",
                                  "--source", "--destination"}, {"--quiet"}, False),
    ("device", "copy", "to"): ({"--device", "--json-output", "--timeout", "--domain-type", "--domain-identifier",
                                "--source", "--destination"}, {"--quiet"}, False),
}
SIGNALS = {"SIGKILL": 9, "SIGTERM": 15, "SIGINT": 2}


class Failure(Exception):
    def __init__(self, code, description, domain=CORE, underlying=None, **fields):
        super().__init__(description)
        self.error = {"code": code, "domain": domain,
                      "userInfo": {"NSLocalizedDescription": {"string": description},
                                   **{k: {"string": v} for k, v in fields.items()}}}
        if underlying:
            self.error["userInfo"]["NSUnderlyingError"] = {"error": underlying.error}


def usage(msg):
    print(f"devicectl (stand-in): error: {msg}", file=sys.stderr)
    sys.exit(64)


def parse(argv):
    words = next((w for w in COMMANDS if tuple(argv[:len(w)]) == w), None)
    if words is None:
        usage(f"unsupported command {argv[:3]}")
    valued, flags, positional = COMMANDS[words]
    opts, rest, it = {}, [], iter(argv[len(words):])
    for a in it:
        if rest:  # after the first positional everything belongs to it (launch: the app's arguments)
            rest.append(a)
        elif a in valued:
            value = next(it, None)
            if value is None or value.startswith("--"):
                usage(f"{a} needs a value")
            opts[a] = value
        elif a in flags:
            opts[a] = True
        elif a.startswith("-"):
            usage(f"unknown option {a!r} for {' '.join(words)}")
        elif positional:
            rest.append(a)
        else:
            usage(f"unexpected argument {a!r}")
    if "--json-output" not in opts:
        usage("this stand-in needs --json-output (gemmaios always reads devicectl's JSON)")
    if words[0] == "device" and "--device" not in opts:
        usage("--device is required")
    return words, opts, rest


def identifier(udid):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coredevice:{udid}")).upper()


async def lockdown_for(name):
    from pymobiledevice3 import usbmux
    from pymobiledevice3.lockdown import create_using_usbmux

    for mux in await usbmux.list_devices():
        if name in (mux.serial, identifier(mux.serial)):
            return await create_using_usbmux(serial=mux.serial, autopair=False)
    raise Failure(1000, f"The specified device was not found. (Name: {name})", DeviceName=name)


def locked(exc):
    return Failure(4000, "The device is locked.", underlying=Failure(-1, str(exc) or "PasswordProtected",
                                                                     domain="com.apple.mobile.lockdown"))


async def list_devices(opts, rest):
    from pymobiledevice3 import usbmux
    from pymobiledevice3.lockdown import create_using_usbmux

    devices = []
    for mux in await usbmux.list_devices():
        client = await create_using_usbmux(serial=mux.serial, autopair=False)
        try:
            values = client.all_values
            mode = None
            if client.paired:
                mode = "enabled" if await client.get_developer_mode_status() else "disabled"
            hardware = {"udid": mux.serial, "productType": values.get("ProductType"), "platform": "iOS",
                        "deviceType": "iPhone", "reality": "physical", "marketingName": values.get("ProductType")}
            connection = {"pairingState": "paired" if client.paired else "unpaired", "transportType": "wired",
                          "tunnelState": "disconnected"}
            version = values.get("ProductVersion")
            # Xcode 27 writes both: the `properties` dictionary and the deprecated trio.
            devices.append({
                "identifier": identifier(mux.serial), "visibilityClass": "default",
                "hardwareProperties": hardware, "connectionProperties": connection,
                "deviceProperties": {"name": values.get("DeviceName"), "osVersionNumber": version, "bootState": "booted",
                                     **({"developerModeStatus": mode} if mode else {})},
                "properties": {"hardware": hardware, "connection": {**connection, "state": "disconnected"},
                               "software": {"osVersionNumber": {"stringValue": version}},
                               "state": {"name": values.get("DeviceName"), "bootState": "booted",
                                         **({"developerModeStatus": {mode: {}}} if mode else {})}},
            })
        finally:
            await client.close()
    return {"devices": devices}


async def install(opts, rest):
    from pymobiledevice3.exceptions import AppInstallError, PasswordRequiredError
    from pymobiledevice3.services.installation_proxy import InstallationProxyService

    if len(rest) != 1:
        usage("install app takes one path (.app or .ipa)")
    path = Path(rest[0])
    if not path.exists() or path.suffix not in (".app", ".ipa"):
        raise Failure(3002, "Failed to install the app on the device.",
                      underlying=Failure(4, f"The file “{path.name}” couldn’t be opened because there is no such file.",
                                         domain="NSCocoaErrorDomain"))
    client = await lockdown_for(opts["--device"])
    try:
        async with InstallationProxyService(client) as proxy:
            await proxy.install_from_local(path)
            apps = await proxy.lookup() or {}
    except PasswordRequiredError as exc:
        raise locked(exc) from exc
    except AppInstallError as exc:
        legacy, _, detail = str(exc).partition(": ")
        raise Failure(3002, "Failed to install the app on the device.",
                      underlying=Failure(14, f"Unable to Install “{path.stem}”", domain="IXUserPresentableErrorDomain",
                                         NSLocalizedFailureReason=detail or legacy, LegacyErrorString=legacy)) from exc
    finally:
        await client.close()
    installed = [{"bundleID": bid, "installationURL": f"file://{info.get('Path', '')}/",
                  "databaseUUID": identifier(bid)} for bid, info in apps.items()]
    return {"deviceIdentifier": identifier(opts["--device"]), "installedApplications": installed}


async def _dvt(opts):
    from pymobiledevice3.exceptions import InvalidServiceError, PasswordRequiredError
    from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider

    client = await lockdown_for(opts["--device"])
    try:
        dvt = DvtProvider(client)
        await dvt.__aenter__()
    except PasswordRequiredError as exc:
        await client.close()
        raise locked(exc) from exc
    except InvalidServiceError as exc:
        await client.close()
        raise Failure(12040, "The developer disk image could not be mounted on this device.") from exc
    return client, dvt


async def launch(opts, rest):
    from pymobiledevice3.dtx.exceptions import DTXNsError
    from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl

    if not rest:
        usage("process launch needs a bundle identifier")
    bundle_id, arguments = rest[0], rest[1:]
    try:
        env = json.loads(opts.get("--environment-variables", "{}"))
    except json.JSONDecodeError:
        usage("--environment-variables must be a JSON object")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        usage("--environment-variables must be a JSON object of strings")
    try:
        client, dvt = await _dvt(opts)
    except Failure as exc:
        if exc.error["code"] == 4000:  # devicectl says a locked phone would not open the app
            raise Failure(10002, "The application failed to launch.", BundleIdentifier=bundle_id,
                          underlying=Failure(1, f"The request to open \"{bundle_id}\" failed.",
                                             domain="FBSOpenApplicationServiceErrorDomain",
                                             BSErrorCodeDescription="Locked",
                                             NSLocalizedFailureReason=f"Unable to launch {bundle_id} because the device "
                                                                      "was not, or could not be, unlocked")) from exc
        raise
    try:
        async with ProcessControl(dvt) as control:
            pid = await control.launch(bundle_id, arguments=arguments, environment=env,
                                       kill_existing=bool(opts.get("--terminate-existing")))
    except (DTXNsError, AssertionError) as exc:
        text = str(exc) or f"{bundle_id} did not start"
        reason = ("Locked" if "lock" in text.lower() else
                  "Security" if "trust" in text.lower() else "RequestDenied")
        raise Failure(10002, "The application failed to launch.", BundleIdentifier=bundle_id,
                      underlying=Failure(1, f"The request to open \"{bundle_id}\" failed.",
                                         domain="FBSOpenApplicationServiceErrorDomain",
                                         BSErrorCodeDescription=reason, NSLocalizedFailureReason=text)) from exc
    finally:
        await dvt.__aexit__(None, None, None)
        await client.close()
    return {"deviceIdentifier": identifier(opts["--device"]),
            "launchOptions": {"arguments": arguments, "environmentVariables": env,
                              "terminateExistingInstances": bool(opts.get("--terminate-existing")),
                              "startStopped": bool(opts.get("--start-stopped"))},
            "process": {"processIdentifier": pid, "auditToken": []}}


async def processes(opts, rest):
    from pymobiledevice3.services.dvt.instruments.device_info import DeviceInfo

    client, dvt = await _dvt(opts)
    try:
        async with DeviceInfo(dvt) as info:
            listed = await info.proclist()
    finally:
        await dvt.__aexit__(None, None, None)
        await client.close()
    return {"deviceIdentifier": identifier(opts["--device"]),
            "runningProcesses": [{"processIdentifier": p["pid"], "executable": "file://" + p.get("realAppName", "")}
                                 for p in listed]}


async def signal_(opts, rest):
    from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl

    if opts.get("--signal") not in SIGNALS or not str(opts.get("--pid", "")).isdigit():
        usage("process signal needs --pid <n> and --signal SIGKILL|SIGTERM|SIGINT")
    client, dvt = await _dvt(opts)
    try:
        async with ProcessControl(dvt) as control:
            await control.signal(int(opts["--pid"]), SIGNALS[opts["--signal"]])
    finally:
        await dvt.__aexit__(None, None, None)
        await client.close()
    return {"deviceIdentifier": identifier(opts["--device"]), "pid": int(opts["--pid"]),
            "signal": {"name": opts["--signal"], "value": SIGNALS[opts["--signal"]]}}


async def _container(opts):
    from pymobiledevice3.exceptions import PasswordRequiredError, PyMobileDevice3Exception
    from pymobiledevice3.services.house_arrest import HouseArrestService

    for key in ("--domain-type", "--domain-identifier", "--source", "--destination"):
        if key not in opts:
            usage(f"{key} is required")
    if opts["--domain-type"] != "appDataContainer":
        usage(f"this stand-in copies only within appDataContainer, not {opts['--domain-type']!r}")
    client = await lockdown_for(opts["--device"])
    try:
        return client, await HouseArrestService.create(client, opts["--domain-identifier"], documents_only=False)
    except PasswordRequiredError as exc:
        await client.close()
        raise locked(exc) from exc
    except PyMobileDevice3Exception as exc:
        await client.close()
        raise Failure(7000, f"The app with bundle identifier {opts['--domain-identifier']} is not installed.") from exc


def _missing(path):
    return Failure(7000, "The file could not be copied.",
                   underlying=Failure(2, f"No such file or directory: {path}", domain="NSPOSIXErrorDomain"))


async def copy_from(opts, rest):
    from pymobiledevice3.exceptions import AfcFileNotFoundError

    client, afc = await _container(opts)
    source = "/" + opts["--source"].lstrip("/")
    try:
        async with afc:
            data = await afc.get_file_contents(source)
    except AfcFileNotFoundError as exc:
        raise _missing(opts["--source"]) from exc
    finally:
        await client.close()
    dest = Path(opts["--destination"])
    if dest.is_dir():
        dest = dest / Path(source).name
    dest.write_bytes(data)
    return {"deviceIdentifier": identifier(opts["--device"]), "files": [{"source": opts["--source"],
                                                                          "destination": str(dest)}]}


async def copy_to(opts, rest):
    source = Path(opts.get("--source", ""))
    if not source.is_file():
        usage(f"--source {source} is not a file")
    client, afc = await _container(opts)
    dest = "/" + opts["--destination"].lstrip("/")
    try:
        async with afc:
            await afc.makedirs(dest.rsplit("/", 1)[0] or "/")
            await afc.set_file_contents(dest, source.read_bytes())
    finally:
        await client.close()
    return {"deviceIdentifier": identifier(opts["--device"]), "files": [{"source": str(source), "destination": dest}]}


HANDLERS = {("list", "devices"): list_devices, ("device", "install", "app"): install,
            ("device", "process", "launch"): launch, ("device", "info", "processes"): processes,
            ("device", "process", "signal"): signal_, ("device", "copy", "from"): copy_from,
            ("device", "copy", "to"): copy_to}


def main(argv):
    words, opts, rest = parse(argv)
    info = {"arguments": ["devicectl", *argv], "commandType": "devicectl." + ".".join(words), "environment": {},
            "jsonVersion": 5, "version": VERSION}
    try:
        result = asyncio.run(HANDLERS[words](opts, rest))
        out = {"info": {**info, "outcome": "success"}, "result": result}
        code = 0
    except Exception as exc:  # noqa: BLE001 - a stand-in bug is reported as a failure, never as success
        if not isinstance(exc, Failure):
            traceback.print_exc()
            exc = Failure(-1, f"the devicectl stand-in crashed: {exc!r}", domain="gemmaios.StandInCrash")
        out = {"error": exc.error, "info": {**info, "outcome": "failed"}}
        print(f"ERROR: {exc} ({exc.error['domain']} error {exc.error['code']})", file=sys.stderr)
        code = 1
    Path(opts["--json-output"]).write_text(json.dumps(out, indent=2, default=str))
    if not opts.get("--quiet"):
        print(json.dumps(out.get("result", {}), default=str)[:2000])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
