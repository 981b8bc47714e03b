"""The stand-in app's bench protocol (issue 16), as GemmaiosCore's BenchProtocol.swift and
BenchRunner's sustained phase: what iOS reports as the run goes (thermal state, battery), the
thermal tracker, the sustained tok/s meter. Like `devicesim.standin`, it knows nothing of
`gemmaios.contract`: record names come from the app's compiled-in Contract.
"""

from __future__ import annotations

import time

THERMAL_ORDER = ("nominal", "fair", "serious", "critical")


class DeviceState:
    """What iOS reports as the run goes: ProcessInfo.thermalState (a fixed state or a schedule over
    seconds since launch) and UIDevice's battery (level draining at `battery_drain_per_minute`)."""

    def __init__(self, facts: dict, clock) -> None:
        thermal = facts.get("thermal_state", "nominal")
        self.schedule = sorted((float(t), str(state)) for t, state in thermal) if isinstance(thermal, list) \
            else [(0.0, str(thermal))]
        self.clock = clock
        self.level = float(facts.get("battery_level", 1.0))
        self.drain = float(facts.get("battery_drain_per_minute", 0.0))
        self.battery_state = facts.get("battery_state", "unknown")

    def thermal_state(self) -> str:
        now = self.clock()
        return next((state for t, state in reversed(self.schedule) if t <= now), self.schedule[0][1])

    def battery_level(self) -> float:
        # UIDevice reports whole percents
        return round(max(self.level - self.drain * self.clock() / 60.0, 0.0), 2)


class ThermalTracker:
    """GemmaiosCore's ThermalTracker: start, peak (most severe) and current state."""

    def __init__(self, start: str) -> None:
        self.start = self.current = self.peak = start

    def observe(self, state: str) -> bool:
        if state == self.current:
            return False
        self.current = state
        if THERMAL_ORDER.index(state) > THERMAL_ORDER.index(self.peak):
            self.peak = state
        return True


class SustainedMeter:
    """GemmaiosCore's SustainedMeter: decoded tokens counted into fixed intervals from `start`."""

    def __init__(self, start: float, duration: float, interval: float) -> None:
        self.start, self.duration, self.interval = start, duration, max(interval, 0.001)
        self.interval_start, self.tokens, self.total = start, 0, 0

    @property
    def end(self) -> float:
        return self.start + self.duration

    def running(self, now: float) -> bool:
        return now < self.end

    def token(self, at: float) -> list[tuple[float, float, int]]:
        closed = self.close(at)
        self.tokens += 1
        self.total += 1
        return closed

    def close(self, upto: float) -> list[tuple[float, float, int]]:
        out = []
        while upto >= self.interval_start + self.interval and self.interval_start + self.interval <= self.end + 1e-9:
            out.append((self.interval_start + self.interval, self.interval, self.tokens))
            self.interval_start += self.interval
            self.tokens = 0
        return out

    def finish(self, at: float) -> list[tuple[float, float, int]]:
        out = self.close(min(at, self.end))
        last = min(at, self.end) - self.interval_start
        if last > 1e-6:
            out.append((self.interval_start + last, last, self.tokens))
            self.interval_start += last
            self.tokens = 0
        return out


def process_age() -> float:
    """Seconds since this process started (the app's kinfo_proc p_starttime)."""
    import psutil

    return max(time.time() - psutil.Process().create_time(), 0.0)


def sustained_phase(app, settings, writer, runner, prompt_set, max_new, stop_ids, function, sizes, clock, thermal,
                    observe_thermal, prepare) -> dict:
    """BenchRunner.runSustained: the prompt set over and over for the launch's duration, a tok/s
    sample per interval; returns the launch_end fields that sum it up. `prepare(prompt)`: the
    engine's ids and picture for a prompt (image prompts run as in the trials)."""
    meter = SustainedMeter(clock(), float(settings.duration), float(settings.sample_interval))
    generations = 0

    def flush(samples) -> None:
        for t, interval, tokens in samples:
            observe_thermal()
            writer.write({"type": app.c("sampleRecord"), "t": round(t, 3), "interval_s": round(interval, 3),
                          "tokens": tokens, "tok_s": round(tokens / interval, 4) if interval > 0 else 0.0,
                          "thermal_state": thermal.current, "launch": settings.launch_index})

    while meter.running(clock()):
        prompt = prompt_set["prompts"][generations % len(prompt_set["prompts"])]
        ids, picture = prepare(prompt)
        requested = clock()
        gen = runner.generate(ids, max_new, stop_ids=stop_ids, chunked=function is not None, sizes=sizes,
                              image=picture)
        times = [requested + gen.ttft_seconds]
        for gap in gen.decode_token_seconds:
            times.append(times[-1] + gap)
        for t in times:
            if t < meter.end:
                flush(meter.token(t))
        generations += 1
    flush(meter.finish(clock()))
    return {"sustained_seconds": float(settings.duration), "sustained_tokens": meter.total,
            "sustained_generations": generations}
