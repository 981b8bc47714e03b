"""A loopback simulator of the device side: usbmuxd, lockdownd and the services gemmaios uses.

The real pymobiledevice3 client talks to it unchanged through `USBMUXD_SOCKET_ADDRESS`:
usbmuxd's plist protocol on a UNIX socket; lockdownd's length-prefixed plists with a real
TLS session after StartSession (the simulator makes the pair record with pymobiledevice3's
own pairing-certificate generator and serves the device certificate); installation_proxy;
AFC (media, house_arrest, crash reports); the image mounter; the crash-report mover; and a
DVT process-control channel over DTX (served with pymobiledevice3's DTX peer, so that
channel's wire format is self-consistent rather than checked against Apple's).

Developer services are served over lockdown, as on iOS < 17: the iOS 17+ RemoteXPC tunnel
(tunneld/RSD, cryptexd, CoreDevice) is not simulated. Like a real phone, a locked one still
serves installation_proxy, AFC and DVT; lockdown's PasswordProtected says it is locked, pairing
is refused and a launch fails with FrontBoard's "could not be, unlocked". A service lockdownd
does not know is refused with InvalidService; the assertion agent records power assertions.

Installing an .ipa unpacks its .app on the simulated device; launching it starts the app
stand-in (`devicesim.standin`) as a real process with the launch environment and arguments,
which follows the Swift app's contract (reads the payload, runs the bundle through Core AI's
runtime, writes the transcript). When it dies the simulator files the crash report iOS would
(an .ips for a crash, a JetsamEvent for a memory kill).
"""

from __future__ import annotations

import asyncio
import json
import os
import plistlib
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .afc import AfcServer

LOCKDOWN_PORT = 62078
DVT_SERVICE = "com.apple.instruments.remoteserver.DVTSecureSocketProxy"
ASSERTION_SERVICE = "com.apple.mobile.assertion_agent"
SERVED = {DVT_SERVICE, ASSERTION_SERVICE, "com.apple.afc", "com.apple.crashreportcopymobile",
          "com.apple.crashreportmover", "com.apple.mobile.house_arrest", "com.apple.mobile.installation_proxy",
          "com.apple.mobile.mobile_image_mounter"}
KERNEL_NAME_MAX = 16  # MAXCOMLEN: JetsamEvent lists process names as the kernel keeps them
SYSTEM_BUID = "SIM-BUID-0001"
HOST_ID = "SIM-HOST-0001"


@cache
def pairing_material() -> dict:
    """Device key + a pair record from pymobiledevice3's own pairing-certificate generator."""
    from pymobiledevice3.ca import generate_pairing_cert_chain

    device_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    device_public_pem = device_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    host_cert, host_key, device_cert, root_cert, root_key = generate_pairing_cert_chain(device_public_pem)
    key_pem = device_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    record = {"DeviceCertificate": device_cert, "HostCertificate": host_cert, "HostPrivateKey": host_key,
              "RootCertificate": root_cert, "RootPrivateKey": root_key, "HostID": HOST_ID,
              "SystemBUID": SYSTEM_BUID, "EscrowBag": b"sim-escrow", "WiFiMACAddress": "00:11:22:33:44:55"}
    return {"record": record, "device_public_pem": device_public_pem, "device_cert": device_cert, "device_key": key_pem}


@cache
def server_tls() -> ssl.SSLContext:
    material = pairing_material()
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as fh:
        fh.write(material["device_cert"] + b"\n" + material["device_key"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.load_cert_chain(fh.name)
    Path(fh.name).unlink()
    return ctx


@dataclass
class SimApp:
    """What iOS gives the launched app, and the faults the simulator injects into it."""

    outcome: str = "complete"  # complete | crash | jetsam | exit (no footer) | hang, at record `fault_at_record`
    fault_at_record: int = 3
    thermal_state: str | list = "nominal"  # a state, or a schedule [[seconds since launch, state], ...]
    seconds_since_unlock: float = 900.0
    corrupt_line: int | None = None  # write this record as broken JSON (a damaged log)
    memory_interval: float = 0.5  # the app's footprint sampling period
    memory_limit_bytes: int = 6_400_000_000
    battery_drain_per_minute: float = 0.0  # battery fraction the running app drains per minute (bench energy)


@dataclass
class SimDevice:
    udid: str
    root: Path
    name: str = "Sim iPhone"
    product_type: str = "iPhone18,2"
    ios: str = "27.0"
    trusted: bool = True
    locked: bool = False
    developer_mode: bool = True
    ddi_mounted: bool = True
    free_bytes: int = 64 << 30
    battery: int = 90
    charging: bool = False
    unplug_after_bytes: int | None = None  # drop the connection once this many AFC bytes are written
    corrupt_writes: dict[str, int] = field(default_factory=dict)  # AFC path → writes to it to corrupt
    trust_after_requests: int | None = None  # an untrusted device accepts the Nth Pair request (the tap)
    install_error: str | None = None  # installation_proxy refuses packages with this error
    refuse_launch: str | None = None  # "no-pid": answer pid 0; other text: answer an NSError saying it
    lockdown_dvt: bool = True  # False: as a real iOS 17+ phone, DVT is not offered over lockdown at all
    container_error: str | None = None  # house_arrest answers this Error (e.g. InstallationLookupFailed)
    report_noise: bool = False  # when the app dies, also file others' reports: a cpu_resource report of
    # the app, a JetsamEvent killing a namesake process (same truncated name, another pid)
    app: SimApp = field(default_factory=SimApp)
    device_id: int = 0
    # what happened, for the tests
    written: dict[str, int] = field(default_factory=dict)
    installs: list[str] = field(default_factory=list)
    launches: list[dict] = field(default_factory=list)
    unplugs: int = 0
    running: dict[str, int] = field(default_factory=dict)  # bundle id → pid
    app_logs: dict[int, Path] = field(default_factory=dict)  # pid → the app's stderr (its NSLog)
    assertions: list[dict] = field(default_factory=list)  # power assertions asked for
    assertions_held: int = 0  # those whose connection is still open

    def __post_init__(self) -> None:
        for sub in ("media", "containers", "crash"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.apps: dict[str, dict] = {}
        self.host_ids = {HOST_ID}
        self.pair_requests = 0
        self.saved_pair_record: bytes | None = None
        self.services: dict[int, str] = {}
        self.next_port = 49200
        self._processes: dict[int, subprocess.Popen] = {}
        self._killed: set[int] = set()
        self._tasks: dict[int, asyncio.Task] = {}

    def count_write(self, rel: str, n: int) -> None:
        self.written[rel] = self.written.get(rel, 0) + n

    def container(self, bundle_id: str) -> Path:
        return self.root / "containers" / bundle_id

    def app_bundle(self, bundle_id: str) -> Path:
        """The installed .app (the app's bundle container)."""
        return self.root / "apps" / bundle_id / f"{self.apps[bundle_id].get('CFBundleExecutable', 'App')}.app"

    def app_log(self, bundle_id: str | None = None) -> str:
        """What the last launched app logged."""
        pids = [pid for pid in self.app_logs if bundle_id is None or any(
            launch["pid"] == pid and launch["bundle_id"] == bundle_id for launch in self.launches)]
        return self.app_logs[max(pids)].read_text(errors="replace") if pids else ""

    def lockdown_values(self) -> dict:
        return {"UniqueDeviceID": self.udid, "DeviceName": self.name, "ProductType": self.product_type,
                "ProductVersion": self.ios, "BuildVersion": "27A1", "DeviceClass": "iPhone",
                "CPUArchitecture": "arm64e", "UniqueChipID": 0x1234, "WiFiAddress": "00:11:22:33:44:55",
                "DevicePublicKey": pairing_material()["device_public_pem"],
                "PasswordProtected": self.locked}  # true while a passcode-locked phone is locked

    def domain_values(self, domain: str | None) -> dict | None:
        return {
            None: self.lockdown_values(),
            "com.apple.disk_usage": {"TotalDataCapacity": 256 << 30, "AmountDataAvailable": self.free_bytes,
                                     "TotalDiskCapacity": 256 << 30},
            "com.apple.mobile.battery": {"BatteryCurrentCapacity": self.battery, "BatteryIsCharging": self.charging,
                                         "ExternalConnected": self.charging},
            "com.apple.security.mac.amfi": {"DeveloperModeStatus": self.developer_mode},
        }.get(domain)


async def _read_plist(reader: asyncio.StreamReader) -> dict | None:
    try:
        (size,) = struct.unpack(">L", await reader.readexactly(4))
        return plistlib.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def _write_plist(writer: asyncio.StreamWriter, message: dict) -> None:
    data = plistlib.dumps(message)
    writer.write(struct.pack(">L", len(data)) + data)
    await writer.drain()


class DeviceSim:
    """usbmuxd on a UNIX socket plus the devices behind it, run on a background event loop."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        self.devices: list[SimDevice] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="devicesim")
        self._server = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> DeviceSim:
        server_tls()  # build the TLS material before the first client connects
        self._thread.start()
        self._call(self._start_server())
        return self

    async def _start_server(self) -> None:
        self._server = await asyncio.start_unix_server(self._mux_client, path=str(self.socket_path))

    def stop(self) -> None:
        async def _stop():
            self._server.close()
            for device in self.devices:
                for task in device._tasks.values():
                    task.cancel()
                for pid in list(device._processes):
                    self.kill(device, pid)
        self._call(_stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def add(self, device: SimDevice) -> SimDevice:
        device.device_id = len(self.devices) + 1
        self.devices.append(device)
        return device

    # ---- usbmuxd ---------------------------------------------------------------------------
    async def _mux_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    (length,) = struct.unpack("<L", await reader.readexactly(4))
                    version, _message, tag = struct.unpack("<LLL", await reader.readexactly(12))
                    request = plistlib.loads(await reader.readexactly(length - 16))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                kind = request.get("MessageType")
                if kind == "Connect":
                    device = next((d for d in self.devices if d.device_id == request["DeviceID"]), None)
                    port = socket.ntohs(request["PortNumber"])
                    ok = device is not None and (port == LOCKDOWN_PORT or port in device.services)
                    await self._mux_reply(writer, tag, {"MessageType": "Result", "Number": 0 if ok else 3})
                    if ok:
                        await self._device_port(device, port, reader, writer)
                    return
                await self._mux_reply(writer, tag, self._mux_answer(kind, request))
        finally:
            writer.close()

    def _mux_answer(self, kind: str, request: dict) -> dict:
        if kind == "ReadBUID":
            return {"BUID": SYSTEM_BUID}
        if kind == "ListDevices":
            return {"DeviceList": [
                {"MessageType": "Attached", "DeviceID": d.device_id,
                 "Properties": {"SerialNumber": d.udid, "ConnectionType": "USB", "DeviceID": d.device_id,
                                "ProductID": 0x12A8, "LocationID": d.device_id}}
                for d in self.devices]}
        if kind == "ReadPairRecord":
            device = next((d for d in self.devices if d.udid == request.get("PairRecordID")), None)
            if device is None or not device.trusted:
                return {"MessageType": "Result", "Number": 2}
            return {"PairRecordData": device.saved_pair_record or plistlib.dumps(pairing_material()["record"])}
        if kind == "SavePairRecord":
            device = next((d for d in self.devices if d.udid == request.get("PairRecordID")), None)
            if device is not None:
                device.saved_pair_record = request["PairRecordData"]
            return {"MessageType": "Result", "Number": 0}
        if kind == "Listen":
            return {"MessageType": "Result", "Number": 0}
        return {"MessageType": "Result", "Number": 1}

    @staticmethod
    async def _mux_reply(writer: asyncio.StreamWriter, tag: int, message: dict) -> None:
        payload = plistlib.dumps(message)
        writer.write(struct.pack("<LLLL", 16 + len(payload), 1, 8, tag) + payload)
        await writer.drain()

    async def _device_port(self, device: SimDevice, port: int, reader, writer) -> None:
        if port == LOCKDOWN_PORT:
            await self._lockdown(device, reader, writer)
            return
        name = device.services.pop(port)
        if name == DVT_SERVICE:
            await writer.start_tls(server_tls())
            await self._dvt(device, reader, writer)
        elif name == "com.apple.afc":
            await AfcServer(device.root / "media", device).serve(reader, writer)
        elif name == "com.apple.crashreportcopymobile":
            await AfcServer(device.root / "crash", device).serve(reader, writer)
        elif name == "com.apple.crashreportmover":
            writer.write(b"ping\x00")
            await writer.drain()
        elif name == "com.apple.mobile.house_arrest":
            await self._house_arrest(device, reader, writer)
        elif name == "com.apple.mobile.installation_proxy":
            await self._installation_proxy(device, reader, writer)
        elif name == "com.apple.mobile.mobile_image_mounter":
            await self._image_mounter(device, reader, writer)
        elif name == ASSERTION_SERVICE:
            await self._assertion_agent(device, reader, writer)

    # ---- lockdownd -------------------------------------------------------------------------
    async def _lockdown(self, device: SimDevice, reader, writer) -> None:
        session = False
        while (request := await _read_plist(reader)) is not None:
            name = request.get("Request")
            reply: dict = {"Request": name}
            if name == "QueryType":
                reply["Type"] = "com.apple.mobile.lockdown"
            elif name == "GetValue":
                values = device.domain_values(request.get("Domain"))
                key = request.get("Key")
                if values is None or (key is not None and key not in values):
                    reply["Error"] = "MissingValue"
                else:
                    reply["Value"] = values[key] if key else values
            elif name == "StartSession":
                if not device.trusted or request.get("HostID") not in device.host_ids:
                    reply["Error"] = "InvalidHostID"
                else:
                    reply.update(SessionID="sim-session", EnableSessionSSL=True)
                    await _write_plist(writer, reply)
                    await writer.start_tls(server_tls())
                    session = True
                    continue
            elif name == "StopSession":
                reply["Result"] = "Success"
            elif name == "Pair":
                device.pair_requests += 1
                if device.locked:
                    reply["Error"] = "PasswordProtected"
                elif device.trust_after_requests and device.pair_requests >= device.trust_after_requests:
                    device.trusted = True  # someone tapped Trust
                    device.host_ids.add(request["PairRecord"]["HostID"])
                    reply["EscrowBag"] = b"sim-escrow"
                else:
                    reply["Error"] = "PairingDialogResponsePending"
            elif name == "StartService":
                service = request.get("Service")
                if not session:
                    reply["Error"] = "InvalidConnection"
                elif service not in SERVED:
                    reply["Error"] = "InvalidService"
                elif service == DVT_SERVICE and not (device.ddi_mounted and device.lockdown_dvt):
                    reply["Error"] = "InvalidService"
                else:
                    port = device.next_port
                    device.next_port += 1
                    device.services[port] = service
                    reply.update(Service=service, Port=port, EnableServiceSSL=service == DVT_SERVICE)
            else:
                reply["Error"] = "UnknownRequest"
            await _write_plist(writer, reply)

    # ---- services --------------------------------------------------------------------------
    async def _house_arrest(self, device: SimDevice, reader, writer) -> None:
        request = await _read_plist(reader)
        bundle_id = request.get("Identifier") if request else None
        if bundle_id not in device.apps:
            await _write_plist(writer, {"Error": "ApplicationLookupFailed"})
            return
        if device.container_error:
            await _write_plist(writer, {"Error": device.container_error})
            return
        await _write_plist(writer, {"Status": "Complete"})
        await AfcServer(device.container(bundle_id), device).serve(reader, writer)

    async def _installation_proxy(self, device: SimDevice, reader, writer) -> None:
        while (request := await _read_plist(reader)) is not None:
            command = request.get("Command")
            if command in ("Install", "Upgrade"):
                package = device.root / "media" / request["PackagePath"].lstrip("/")
                try:
                    info = _read_app_info(package)
                except (OSError, KeyError, zipfile.BadZipFile, plistlib.InvalidFileException) as exc:
                    await _write_plist(writer, {"Error": "PackageInspectionFailed", "ErrorDescription": str(exc)})
                    continue
                for status, percent in (("CreatingStagingDirectory", 5), ("ExtractingPackage", 15),
                                        ("VerifyingApplication", 40), ("InstallingApplication", 80)):
                    await _write_plist(writer, {"Status": status, "PercentComplete": percent})
                if device.install_error:
                    await _write_plist(writer, {"Error": device.install_error, "ErrorDescription": "refused by the sim"})
                    continue
                bundle_id = info["CFBundleIdentifier"]
                (device.container(bundle_id) / "Documents").mkdir(parents=True, exist_ok=True)
                device.apps[bundle_id] = info
                _unpack_app(package, device.app_bundle(bundle_id))
                device.installs.append(bundle_id)
                await _write_plist(writer, {"Status": "Complete"})
            elif command == "Lookup":
                wanted = request.get("ClientOptions", {}).get("BundleIDs")
                result = {b: {**i, "Container": str(device.container(b)), "Path": str(device.app_bundle(b))}
                          for b, i in device.apps.items()
                          if wanted is None or b in wanted}
                await _write_plist(writer, {"LookupResult": result, "Status": "Complete"})
            else:
                await _write_plist(writer, {"Error": "UnknownCommand"})

    async def _image_mounter(self, device: SimDevice, reader, writer) -> None:
        while (request := await _read_plist(reader)) is not None:
            command = request.get("Command")
            if command == "LookupImage":
                await _write_plist(writer, {"ImageSignature": [b"sim-signature"] if device.ddi_mounted else [],
                                            "Status": "Complete"})
            elif command == "CopyDevices":
                entries = [{"DiskImageType": "Personalized", "IsMounted": True}] if device.ddi_mounted else []
                await _write_plist(writer, {"EntryList": entries, "Status": "Complete"})
            else:
                await _write_plist(writer, {"Error": "UnknownCommand"})

    async def _assertion_agent(self, device: SimDevice, reader, writer) -> None:
        """IOPMAssertionCreateWithName for the client; held until its connection closes."""
        held = 0
        try:
            while (request := await _read_plist(reader)) is not None:
                if request.get("CommandKey") == "CommandCreateAssertion":
                    device.assertions.append(dict(request))
                    device.assertions_held += 1
                    held += 1
                    await _write_plist(writer, {"CommandKey": "CommandCreateAssertion", "Status": "Success"})
                else:
                    await _write_plist(writer, {"Error": "UnknownCommand"})
        finally:
            device.assertions_held -= held

    async def _dvt(self, device: SimDevice, reader, writer) -> None:
        from pymobiledevice3.dtx import DTXConnection

        from .dvt import make_device_info, make_process_control

        connection = DTXConnection(reader, writer)
        connection.register_services(make_process_control(self, device))
        connection.register_services(make_device_info(self, device))
        await connection.connect()
        await connection.wait_disconnected()

    # ---- the app ---------------------------------------------------------------------------
    def launch(self, device: SimDevice, bundle_id: str, environment: dict, arguments: list) -> int:
        """Start the installed app: the stand-in process, with the launch environment and arguments."""
        if bundle_id not in device.apps or device.refuse_launch == "no-pid":
            return 0
        old = device.running.pop(bundle_id, None)
        if old is not None:
            self.kill(device, old)
        app = device.app
        facts = {"product_type": device.product_type, "name": device.name, "os_version": device.ios,
                 "battery_level": device.battery / 100, "battery_state": "charging" if device.charging else "unplugged",
                 "thermal_state": app.thermal_state, "seconds_since_unlock": app.seconds_since_unlock,
                 "memory_interval": app.memory_interval, "memory_limit_bytes": app.memory_limit_bytes,
                 "outcome": app.outcome, "fault_at_record": app.fault_at_record, "corrupt_line": app.corrupt_line,
                 "battery_drain_per_minute": app.battery_drain_per_minute}
        documents = device.container(bundle_id) / "Documents"
        logs = device.root / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{bundle_id}-{len(device.launches)}.log"
        command = [sys.executable, "-m", "devicesim.standin", "--app", str(device.app_bundle(bundle_id)),
                   "--documents", str(documents), "--facts", json.dumps(facts), "--",
                   *[str(a) for a in arguments]]
        env = {**_host_environment(), **{str(k): str(v) for k, v in environment.items()}}
        with open(log, "wb") as stderr:
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=stderr, cwd=str(documents))
        pid = process.pid
        device._processes[pid] = process
        device.app_logs[pid] = log
        device.running[bundle_id] = pid
        device.launches.append({"bundle_id": bundle_id, "environment": dict(environment),
                                "arguments": list(arguments), "pid": pid, "kept_awake": device.assertions_held > 0})
        device._tasks[pid] = self.loop.create_task(self._watch(device, bundle_id, pid))
        return pid

    def kill(self, device: SimDevice, pid: int) -> None:
        process = device._processes.get(pid)
        if process is not None and process.poll() is None:
            device._killed.add(pid)
            process.kill()
            process.wait(timeout=10)
        for bundle_id, running in list(device.running.items()):
            if running == pid:
                del device.running[bundle_id]

    async def _watch(self, device: SimDevice, bundle_id: str, pid: int) -> None:
        """When the app dies on its own, file the report iOS would."""
        process = device._processes[pid]
        try:
            while process.poll() is None:
                await asyncio.sleep(0.05)
            if pid not in device._killed:
                code = process.returncode
                outcome = {-signal.SIGABRT: "crash", -signal.SIGSEGV: "crash", -signal.SIGKILL: "jetsam"}.get(
                    code, "exit" if device.app.outcome == "exit" else None)
                if outcome:
                    self._write_crash_report(device, bundle_id, pid, outcome)
                if device.report_noise:
                    self._write_noise_reports(device, bundle_id, pid)
        finally:
            device._processes.pop(pid, None)
            device._tasks.pop(pid, None)
            if device.running.get(bundle_id) == pid:
                del device.running[bundle_id]

    def _write_crash_report(self, device: SimDevice, bundle_id: str, pid: int, outcome: str) -> None:
        stamp = time.strftime("%Y-%m-%d-%H%M%S")
        process = device.apps[bundle_id].get("CFBundleExecutable", "App")
        if outcome == "crash":
            body = {"app_name": process, "bundleID": bundle_id, "bug_type": "309"}
            text = json.dumps(body) + "\n" + json.dumps({"pid": pid, "exception": {"type": "EXC_BAD_ACCESS",
                                                                                    "signal": "SIGSEGV"}})
            (device.root / "crash" / f"{process}-{stamp}.ips").write_text(text)
        else:  # a JetsamEvent lists every process; only the killed ones carry a reason
            ours = {"name": process[:KERNEL_NAME_MAX], "pid": pid, "rpages": 400000}
            if outcome == "jetsam":
                ours["reason"] = "per-process-limit"
            others = [{"name": "MobileSafari", "pid": 99, "rpages": 90000, "reason": "vm-pageshortage"}]
            text = json.dumps({"bug_type": "298"}) + "\n" + json.dumps({"largestProcess": process,
                                                                       "processes": [ours, *others]})
            (device.root / "crash" / f"JetsamEvent-{stamp}.ips").write_text(text)


    def _write_noise_reports(self, device: SimDevice, bundle_id: str, pid: int) -> None:
        """Reports about something else that a real phone files too: a resource report named after the
        app (it kept running), and a JetsamEvent that killed another process of the same truncated name."""
        stamp = time.strftime("%Y-%m-%d-%H%M%S")
        process = device.apps[bundle_id].get("CFBundleExecutable", "App")
        resource = json.dumps({"app_name": process, "bug_type": "202", "name": process}) + "\n" + json.dumps(
            {"pid": pid, "event": "cpu usage", "action": "none", "duration": "180.00s"})
        (device.root / "crash" / f"{process}.cpu_resource-{stamp}.ips").write_text(resource)
        namesake = {"name": process[:KERNEL_NAME_MAX], "pid": pid + 100000, "rpages": 50000,
                    "reason": "per-process-limit"}
        jetsam = json.dumps({"bug_type": "298"}) + "\n" + json.dumps(
            {"largestProcess": process, "processes": [{"name": process[:KERNEL_NAME_MAX], "pid": pid,
                                                        "rpages": 1000}, namesake]})
        (device.root / "crash" / f"JetsamEvent-{stamp}-noise.ips").write_text(jetsam)


def _host_environment() -> dict[str, str]:
    """What the stand-in process needs from this machine (its interpreter, gemmaios, devicesim)."""
    import gemmaios

    paths = [str(Path(__file__).resolve().parents[1]), str(Path(gemmaios.__file__).resolve().parents[1])]
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "LD_LIBRARY_PATH")}
    return {**keep, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


def _unpack_app(package: Path, dest: Path) -> None:
    """installd: the .app out of the .ipa, replacing an earlier install."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with zipfile.ZipFile(package) as archive:
        for member in archive.infolist():
            parts = member.filename.split("/")
            if len(parts) < 3 or parts[0] != "Payload" or not parts[1].endswith(".app") or member.is_dir():
                continue
            target = dest.joinpath(*parts[2:])
            if ".." in parts:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)  # as installd: a multi-GB app is not read into memory


def _read_app_info(package: Path) -> dict:
    with zipfile.ZipFile(package) as archive:
        name = next(n for n in archive.namelist() if n.startswith("Payload/") and n.endswith(".app/Info.plist")
                    and n.count("/") == 2)
        return plistlib.loads(archive.read(name))
