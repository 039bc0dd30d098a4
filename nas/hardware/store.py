"""Where devices and their tables are kept: a small store contract and a JSON-directory store.

The service will back ``DeviceStore`` with its database; the directory store serves a
notebook, the CLI and tests. Built-in host devices are always known and cannot be replaced.

Contract (every implementation):

- ``register`` stores a device, or refuses (``ValueError``) a name that is built in or
  already registered with other settings; registering the same device again is a no-op.
- ``put_table`` stores a table under its device, space and preset (replacing an older one);
  the device must be known. ``get_table`` returns it or raises ``TableError``.
- Reads never see half-written files; one writer per store at a time.
"""

from __future__ import annotations

import abc
from pathlib import Path

from pydantic import ValidationError

from nas.hardware.device import Device, builtin_devices
from nas.hardware.table import LatencyTable, TableError, read_table, write_table


class DeviceNotFoundError(KeyError):
    """No device of that name; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class DeviceStore(abc.ABC):
    """Devices (built-in and registered) and their latency tables."""

    @abc.abstractmethod
    def registered(self) -> list[Device]:
        """Registered devices (not the built-in ones), by name."""

    @abc.abstractmethod
    def _save_device(self, device: Device) -> None: ...

    @abc.abstractmethod
    def _save_table(self, table: LatencyTable) -> None: ...

    @abc.abstractmethod
    def get_table(self, device: str, space: str, preset: str) -> LatencyTable:
        """The table of ``device`` for ``space``/``preset``; ``TableError`` when there is none."""

    @abc.abstractmethod
    def tables(self, device: str) -> list[tuple[str, str]]:
        """(space, preset) of every table stored for ``device``."""

    def devices(self) -> list[Device]:
        return [*builtin_devices().values(), *self.registered()]

    def get(self, name: str) -> Device:
        for device in self.devices():
            if device.name == name:
                return device
        known = [d.name for d in self.devices()]
        raise DeviceNotFoundError(f"unknown device {name!r}; known devices: {known}")

    def register(self, device: Device) -> None:
        if device.name in builtin_devices():
            raise ValueError(f"name: {device.name!r} is a built-in device; choose another name")
        try:
            existing = self.get(device.name)
        except DeviceNotFoundError:
            self._save_device(device)
            return
        if existing != device:
            raise ValueError(
                f"name: device {device.name!r} is already registered with other settings"
            )

    def put_table(self, table: LatencyTable) -> None:
        known = self.get(table.device.name)
        if known != table.device:
            raise TableError(
                f"table was measured on device settings that differ from the registered "
                f"device {known.name!r}"
            )
        self._save_table(table)


class JsonDirectoryStore(DeviceStore):
    """``root/<device>/device.json`` and ``root/<device>/<space>--<preset>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def registered(self) -> list[Device]:
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.glob("*/device.json")):
            try:
                found.append(Device.model_validate_json(path.read_text()))
            except ValidationError as exc:
                raise ValueError(
                    f"{path}: not a valid device ({exc.error_count()} errors)"
                ) from None
        return found

    def _save_device(self, device: Device) -> None:
        folder = self.root / device.name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".device.json.tmp"
        tmp.write_text(device.model_dump_json(indent=1))
        tmp.replace(folder / "device.json")

    def _table_path(self, device: str, space: str, preset: str) -> Path:
        return self.root / device / f"{space}--{preset}.json"

    def _save_table(self, table: LatencyTable) -> None:
        write_table(table, self._table_path(table.device.name, table.space, table.preset))

    def get_table(self, device: str, space: str, preset: str) -> LatencyTable:
        self.get(device)
        path = self._table_path(device, space, preset)
        if not path.is_file():
            raise TableError(
                f"device {device!r} has no latency table for space {space!r} preset {preset!r}"
            )
        return read_table(path)

    def tables(self, device: str) -> list[tuple[str, str]]:
        self.get(device)
        out = []
        for path in sorted((self.root / device).glob("*--*.json")):
            space, preset = path.stem.split("--", 1)
            out.append((space, preset))
        return out
