"""Device side of the DVT process-control channel (launch, pid lookup, signals)."""

from __future__ import annotations

from pymobiledevice3.dtx import DTXService, dtx_on_invoke
from pymobiledevice3.dtx.ns_types import NSError


def make_process_control(sim, device):
    class SimProcessControl(DTXService):
        IDENTIFIER = "com.apple.instruments.server.services.processcontrol"

        @dtx_on_invoke("launchSuspendedProcessWithDevicePath:bundleIdentifier:environment:arguments:options:")
        async def launch(self, path, bundle_id, environment, arguments, options):
            if device.refuse_launch not in (None, "no-pid"):
                return NSError(1, "com.apple.dt.deviceprocesscontrolservice",
                               {"NSLocalizedDescription": device.refuse_launch})
            if device.locked:  # FrontBoard's answer (FBSOpenApplicationErrorDomain 7, "Locked")
                return NSError(1, "com.apple.dt.deviceprocesscontrolservice", {"NSLocalizedDescription": (
                    f'The request to open "{bundle_id}" failed. The request was denied by service delegate '
                    f'(SBMainWorkspace) for reason: Locked ("Unable to launch {bundle_id} because the device '
                    'was not, or could not be, unlocked").')})
            return sim.launch(device, bundle_id, environment or {}, arguments or [])

        @dtx_on_invoke("processIdentifierForBundleIdentifier:")
        async def pid_for(self, bundle_id):
            return device.running.get(bundle_id, 0)

        @dtx_on_invoke("sendSignal:toPid:")
        async def signal(self, sig, pid):
            sim.kill(device, pid)
            return True

        @dtx_on_invoke("killPid:")
        async def kill(self, pid):
            sim.kill(device, pid)

    return SimProcessControl


def make_device_info(sim, device):
    """Device side of DVT's deviceinfo channel: the running processes (devicectl's `info processes`)."""

    class SimDeviceInfo(DTXService):
        IDENTIFIER = "com.apple.instruments.server.services.deviceinfo"

        @dtx_on_invoke("runningProcesses")
        async def running_processes(self):
            listed = [{"pid": 1, "name": "launchd", "realAppName": "/sbin/launchd", "isApplication": False}]
            for bundle_id, pid in sorted(device.running.items()):
                executable = device.app_bundle(bundle_id) / device.apps[bundle_id].get("CFBundleExecutable", "App")
                listed.append({"pid": pid, "name": executable.name, "realAppName": str(executable),
                               "isApplication": True, "bundleIdentifier": bundle_id})
            return listed

        @dtx_on_invoke("isRunningPid:")
        async def is_running_pid(self, pid):
            return pid in device.running.values()

    return SimDeviceInfo
