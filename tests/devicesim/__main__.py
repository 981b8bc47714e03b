"""Serve a simulated iPhone for trying the CLI by hand:

    PYTHONPATH=tests python -m devicesim /tmp/sim        # then, in another shell:
    USBMUXD_SOCKET_ADDRESS=/tmp/sim/mux.sock GEMMAIOS_DEVICE_TRANSPORT=lockdown gemmaios devices
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import DeviceSim, SimDevice


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gemmaios-sim")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mux.sock").unlink(missing_ok=True)
    sim = DeviceSim(folder / "mux.sock").start()
    sim.add(SimDevice(udid="00008150-000A1B2C3D4E5F60", root=folder / "device"))
    print(f"USBMUXD_SOCKET_ADDRESS={folder / 'mux.sock'}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
