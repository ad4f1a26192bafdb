"""Real shards for the Python client's tests: 2 embedps-server processes on 127.0.0.1 (the Swift build's
binaries: $EMBEDPS_BIN, else .build/debug, else .build/release), stopped after the session."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "python"))


def binary_dir():
    for d in (os.environ.get("EMBEDPS_BIN"), os.path.join(REPO, ".build", "debug"), os.path.join(REPO, ".build", "release")):
        if d and os.access(os.path.join(d, "embedps-server"), os.X_OK):
            return d
    pytest.exit("no embedps-server binary: run 'swift build' first (or set EMBEDPS_BIN)", returncode=2)


class Cluster:
    def __init__(self, shards=2):
        self.bin = binary_dir()
        self.root = tempfile.mkdtemp(prefix="embedps-py-")
        server_spec = os.path.join(self.root, "server-spec.json")
        with open(server_spec, "w") as f:
            json.dump({"version": 1, "shards": [{"address": "127.0.0.1:0"} for _ in range(shards)]}, f)
        self.procs, ports = [], []
        for i in range(shards):
            port_file = os.path.join(self.root, f"port-{i}")
            log = open(os.path.join(self.root, f"shard-{i}.log"), "w")
            self.procs.append(subprocess.Popen([os.path.join(self.bin, "embedps-server"), "--cluster", server_spec, "--shard-index", str(i),
                                                "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.root, f"shard-{i}"), "--port-file", port_file],
                                               stdout=log, stderr=subprocess.STDOUT))
            deadline = time.time() + 30
            while not (os.path.exists(port_file) and open(port_file).read().strip()):
                if time.time() > deadline or self.procs[-1].poll() is not None:
                    self.stop()
                    raise RuntimeError(f"shard {i} did not start: {open(os.path.join(self.root, f'shard-{i}.log')).read()[-2000:]}")
                time.sleep(0.05)
            ports.append(int(open(port_file).read().strip()))
        self.spec = {"version": 1, "shards": [{"address": f"127.0.0.1:{p}"} for p in ports]}
        self.spec_path = os.path.join(self.root, "cluster.json")
        with open(self.spec_path, "w") as f:
            json.dump(self.spec, f)

    def admin(self, *args):
        """Runs the Swift embedps-admin against the cluster; returns (exit status, output)."""
        p = subprocess.run([os.path.join(self.bin, "embedps-admin"), *args, "--cluster", self.spec_path], capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout + p.stderr

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster():
    c = Cluster(shards=2)
    yield c
    c.stop()
