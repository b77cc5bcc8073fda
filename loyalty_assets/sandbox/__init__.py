"""The local sandbox: faithful emulators of the platforms our connectors talk to (DESIGN.md §5).

:class:`Sandbox` starts one emulator per platform found in a seed directory (CONTRACT.md §2), all
sharing one replay clock and one fault configuration, and hands out the environment variables
(CONTRACT.md §4) that point the project at them. ``loyalty sandbox`` wraps it; tests use it directly.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Self

from loyalty_assets.sandbox.httpserver import Emulator, EmulatorClock, FaultInjector, dumps, loads
from loyalty_assets.sandbox.magento import DEFAULT_PASSWORD, DEFAULT_USERNAME, MagentoEmulator

log = logging.getLogger(__name__)

# platform -> (module, class, role); each class takes (seed_dir | None, *, clock, faults)
EMULATORS = {
    "magento": ("loyalty_assets.sandbox.magento", "MagentoEmulator", "source"),
    "bigcommerce": ("loyalty_assets.sandbox.bigcommerce", "BigCommerceEmulator", "source"),
    "commercetools": ("loyalty_assets.sandbox.commercetools", "CommercetoolsEmulator", "source"),
    "sfcc": ("loyalty_assets.sandbox.sfcc", "SfccEmulator", "source"),
    "smile": ("loyalty_assets.sandbox.smile", "SmileEmulator", "target"),
    "loyaltylion": ("loyalty_assets.sandbox.loyaltylion", "LoyaltyLionEmulator", "target"),
    "salesforce": ("loyalty_assets.sandbox.salesforce", "SalesforceEmulator", "target"),
}

STATE_FILE_NAME = "sandbox_state.json"
STATE_FORMAT_VERSION = 1


class Sandbox:
    """Emulators for the platforms present in ``data_dir`` (today: Magento, when ``data_dir/magento``
    exists; with ``data_dir=None`` an empty Magento, handy for tests that add records themselves).

    ``state_dir``: when given, runtime state (issued tokens, records added at runtime) is loaded
    from ``state_dir/sandbox_state.json`` on start and written there on stop, so a restarted sandbox
    keeps what clients did to it. ``fault_rate``/``seed``: random faults at that rate on every
    emulator, reproducible per seed. ``now``: the replay clock starts frozen at that instant (tests
    move it with ``POST /_sandbox/clock`` or ``sandbox.clock``); pass ``tick=True`` to let it run
    on from ``now`` instead. Without ``now`` the clock is the real UTC time.
    """

    def __init__(
        self,
        data_dir: Path | None,
        state_dir: Path | None = None,
        fault_rate: float = 0.0,
        seed: int = 0,
        now: datetime | None = None,
        *,
        tick: bool = False,
    ):
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.state_dir = Path(state_dir).resolve() if state_dir is not None else None
        self.fault_rate = fault_rate
        self.seed = seed
        self.clock = EmulatorClock(now, frozen=not tick)
        self.magento: MagentoEmulator | None = None
        self._emulators: dict[str, Emulator] = {}
        self._cert_dir: Path | None = None
        self._started = False
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise FileNotFoundError(f"sandbox seed directory {self.data_dir} does not exist")

    # ----- lifecycle

    @property
    def emulators(self) -> dict[str, Emulator]:
        """The running emulators by platform name."""
        return dict(self._emulators)

    def __getattr__(self, name: str) -> Emulator | None:
        # sandbox.bigcommerce, sandbox.smile, ...: the emulator of that platform, or None
        if name in EMULATORS:
            return self.__dict__.get("_emulators", {}).get(name)
        raise AttributeError(name)

    def _faults(self, platform: str) -> FaultInjector:
        # One reproducible random stream per platform, so adding a platform does not reshuffle others.
        return FaultInjector(self.fault_rate, seed=f"{self.seed}:{platform}")

    def start(self) -> Self:
        """Build and start the emulators; load persisted state when ``state_dir`` holds some."""
        if self._started:
            return self
        for name, (module, cls, role) in EMULATORS.items():
            seed = self.data_dir / name if self.data_dir is not None else None
            has_seed = seed is not None and seed.is_dir()
            # Sources run when the seed directory has their data (an empty Magento without any seed
            # directory, for tests); targets always run, since they receive our pushes.
            wanted = (
                has_seed
                or (role == "target" and self.data_dir is not None)
                or (name == "magento" and self.data_dir is None)
            )
            if not wanted:
                continue
            kwargs: dict[str, Any] = {"clock": self.clock, "faults": self._faults(name)}
            if name == "bigcommerce":
                # an Enterprise-sized quota: the demo fetches every order's products; the 150-per-30s
                # default of the emulator is exercised by its own tests
                kwargs["rate_limit"] = (1500, 30.0)
            if name == "salesforce":
                self._cert_dir = self._cert_dir or Path(tempfile.mkdtemp(prefix="loyalty-sandbox-ca-"))
                kwargs["cert_dir"] = self.state_dir or self._cert_dir
            emulator_cls = getattr(importlib.import_module(module), cls)
            self._emulators[name] = emulator_cls(seed if has_seed else None, **kwargs)
        self.magento = self._emulators.get("magento")
        self._load_state()
        try:
            for emulator in self.emulators.values():
                emulator.start()
        except BaseException:
            self._stop_emulators()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop every emulator and persist runtime state (when ``state_dir`` was given)."""
        if not self._started:
            return
        self._started = False
        try:
            self._save_state()
        finally:
            self._stop_emulators()

    def _stop_emulators(self) -> None:
        for emulator in self.emulators.values():
            emulator.stop()
        if self._cert_dir is not None:  # the throwaway CA of a sandbox without state_dir (kept with one)
            shutil.rmtree(self._cert_dir, ignore_errors=True)
            self._cert_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- configuration handed to the project

    def env(self) -> dict[str, str]:
        """The CONTRACT.md §4 variables that point the project at the running emulators."""
        if not self._started:
            raise RuntimeError("the sandbox is not running; call start() first")
        env: dict[str, str] = {}
        if self.magento is not None:
            env.update(
                {
                    "MAGENTO_BASE_URL": self.magento.base_url,
                    "MAGENTO_ADMIN_USERNAME": DEFAULT_USERNAME,
                    "MAGENTO_ADMIN_PASSWORD": DEFAULT_PASSWORD,
                    "MAGENTO_TENANT": "default",
                }
            )
        for name, emulator in self._emulators.items():
            if name != "magento":
                env.update(emulator.env())
        if self.data_dir is not None and (self.data_dir / "fx_rates.csv").is_file():
            env["LOYALTY_FX_FILE"] = str(self.data_dir / "fx_rates.csv")
        return env

    def write_env_file(self, path: Path) -> Path:
        """Write :meth:`env` as ``KEY=VALUE`` lines (a dotenv file ``dg``/shells can source)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.env().items()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    # ----- persisted state (--state)

    @property
    def state_file(self) -> Path | None:
        return self.state_dir / STATE_FILE_NAME if self.state_dir is not None else None

    def _load_state(self) -> None:
        path = self.state_file
        if path is None or not path.exists():
            return
        try:
            state = loads(path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"sandbox state file {path} is not valid JSON: {exc}") from exc
        if state.get("version") != STATE_FORMAT_VERSION:
            raise ValueError(f"sandbox state file {path} has unsupported version {state.get('version')!r}")
        for name, emulator in self.emulators.items():
            if name in state.get("emulators", {}):
                emulator.import_state(state["emulators"][name])
        log.info("sandbox state loaded from %s", path)

    def _save_state(self) -> None:
        path = self.state_file
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "version": STATE_FORMAT_VERSION,
            "saved_at": self.clock.now().isoformat(),
            "emulators": {name: emu.export_state() for name, emu in self.emulators.items()},
        }
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(dumps(state), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a crash mid-write never leaves a torn state file
        log.info("sandbox state saved to %s", path)


def serve_forever(sandbox: Sandbox) -> None:
    """Block until SIGTERM or SIGINT, then stop the sandbox (persisting state). Call it from the
    main thread (signal handlers can only be installed there) after the sandbox has started."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("sandbox received signal %s, stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sandbox.stop()


__all__ = ["Sandbox", "serve_forever", "MagentoEmulator", "EmulatorClock", "FaultInjector"]
