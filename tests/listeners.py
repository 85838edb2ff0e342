"""Which sockets a process tree listens on (``ss`` from iproute2, ``/proc``): for "nothing listens beyond loopback"."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path

import pytest

_USERS = re.compile(r'\("(?P<name>[^"]*)",pid=(?P<pid>\d+)')


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(stat.parent.name))
    return tree


def process_tree(root: int) -> set[int]:
    """``root`` and every process below it."""
    tree, found, todo = _children(), set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(tree.get(pid, []))
    return found


def listeners(root: int) -> list[tuple[str, str]]:
    """``(process name, local address)`` of every listening TCP or UDP socket of ``root``'s process tree."""
    if shutil.which("ss") is None:
        pytest.skip("no `ss` (iproute2) to list listening sockets")
    pids = process_tree(root)
    out = subprocess.run(["ss", "-ltunpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 7:
            continue
        for user in _USERS.finditer(line):
            if int(user["pid"]) in pids:
                found.append((user["name"], fields[4]))
    return found


def is_loopback(address: str) -> bool:
    """Whether a local address as ``ss`` prints it (``127.0.0.1:80``, ``[::ffff:127.0.0.1]:80``, ``*:80``) is."""
    host = address.rsplit(":", 1)[0].strip("[]").split("%")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # "*" and names: every interface
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def beyond_loopback(root: int) -> list[tuple[str, str]]:
    """The listeners of ``root``'s tree that other hosts could reach (should be none)."""
    return [(name, address) for name, address in listeners(root) if not is_loopback(address)]
