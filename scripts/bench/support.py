"""Processes the benchmarks start (sigil dev, sigil controller, moto_server), the counting proxy
in front of moto, and the statistics of repeated runs. Stdlib only."""

import http.client
import http.server
import json
import os
import shlex
import signal
import statistics
import subprocess
import threading
import time
import urllib.request

from kube import Kube, free_port, wait_for

STARTED = []


def stop_all():
    """Stops every process the benchmarks started, newest first (by pid)."""
    while STARTED:
        STARTED.pop().stop()


def profiled(name, argv, logdir):
    """`argv` under the profiler of SIGIL_BENCH_PROFILER (`{out}`: a file named after the process in
    the log folder), e.g. `perf record -F 300 --call-graph dwarf -o {out} --`. Memory figures are
    then the profiler's, so profile and measure in separate runs."""
    wrapper = os.environ.get("SIGIL_BENCH_PROFILER")
    if not wrapper:
        return argv
    out = os.path.join(logdir, f"{name}.profile")
    return [part.replace("{out}", out) for part in shlex.split(wrapper)] + list(argv)


class Process:
    def __init__(self, name, argv, logdir, env=None, profile=False):
        self.name = name
        self.log = os.path.join(logdir, f"{name}.log")
        if profile:
            argv = profiled(name, argv, logdir)
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        self.pid = self.popen.pid
        STARTED.append(self)

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        if self.alive():
            # The whole group: a profiler wrapping the process and the process itself.
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if self in STARTED:
            STARTED.remove(self)

    def memory_kib(self):
        """(VmHWM, VmRSS) of the process in KiB, from /proc/PID/status."""
        fields = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    fields[key] = int(value.split()[0])
        return fields["VmHWM"], fields["VmRSS"]

    def tail(self, lines=20):
        try:
            with open(self.log, errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def http_ok(url):
    try:
        http_get(url, 2)
        return True
    except OSError:
        return False


class Cluster:
    """`sigil dev --no-controller` (fresh and empty) or the cluster of a given kubeconfig."""

    def __init__(self, tools, workdir, kubeconfig=None, name="dev"):
        self.tools = tools
        self.dev = None
        if kubeconfig is None:
            kubeconfig = os.path.join(workdir, f"{name}.kubeconfig")
            if os.path.exists(kubeconfig):
                os.remove(kubeconfig)
            self.dev = Process(name, [tools.sigil, "dev", "--no-controller", "--listen", "127.0.0.1:0",
                                      "--kubeconfig", kubeconfig], workdir, profile=True)
            wait_for("sigil dev's kubeconfig", 60, lambda: os.path.exists(kubeconfig) or self._died())
        self.kubeconfig = kubeconfig
        self.kube = Kube(kubeconfig, tools.kubectl, workdir)
        wait_for("the API server", 60, lambda: self.kube.try_get("/api/v1/namespaces"))

    def _died(self):
        if not self.dev.alive():
            raise RuntimeError(f"sigil dev exited:\n{self.dev.tail()}")
        return False

    def stop(self):
        self.kube.close()
        if self.dev:
            self.dev.stop()


class Controller:
    """`sigil controller` as its own process, so that its memory is measured alone."""

    NAMESPACE = "sigil-system"

    def __init__(self, tools, cluster, workdir, extra=(), name="controller"):
        cluster.kube.namespace(self.NAMESPACE)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.process = Process(name, [tools.sigil, "controller", "--kubeconfig", cluster.kubeconfig,
                                      "-n", self.NAMESPACE, "--http-listen", f"127.0.0.1:{self.port}",
                                      *extra], workdir, env, profile=True)
        self.started = time.monotonic()
        wait_for("the controller's /healthz", 60, lambda: http_ok(self.url + "/healthz") or self._died())

    def _died(self):
        if not self.process.alive():
            raise RuntimeError(f"sigil controller exited:\n{self.process.tail()}")
        return False

    def metric(self, name, **labels):
        """The sum of every sample of `name` whose labels include `labels`."""
        total = 0.0
        for line in http_get(self.url + "/metrics").splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total

    def memory_mib(self):
        hwm, rss = self.process.memory_kib()
        return hwm / 1024, rss / 1024

    def stop(self):
        self.process.stop()


REGION = "us-east-1"
AUTH = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, "
        "SignedHeaders=host, Signature=0")


class Moto:
    def __init__(self, tools, workdir):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = Process("moto", [tools.moto_server, "-H", "127.0.0.1", "-p", str(self.port)], workdir)
        wait_for("moto_server", 60, lambda: http_ok(self.endpoint + "/moto-api/"), every=0.2)
        self.local = threading.local()

    def call(self, action, body):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("POST", "/", body=json.dumps(body), headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"secretsmanager.{action}",
            "Authorization": AUTH,
        })
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"moto {action}: {response.status} {payload[:200]!r}")
        return json.loads(payload)

    def put(self, name, value):
        """Creates the secret or gives it a new current value."""
        try:
            self.call("PutSecretValue", {"SecretId": name, "SecretString": value})
        except RuntimeError:
            self.call("CreateSecret", {"Name": name, "SecretString": value})


class CountingProxy:
    """Forwards every request to moto and records when it came and which API action it was."""

    def __init__(self, target_port):
        calls, lock = [], threading.Lock()
        self.calls, self.lock = calls, lock

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with lock:
                    calls.append((time.monotonic(), self.headers.get("X-Amz-Target", self.command)))
                upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def since(self, start, end=None):
        """Calls made in [start, end) (monotonic seconds)."""
        with self.lock:
            return [(t, action) for t, action in self.calls if t >= start and (end is None or t < end)]

    def stop(self):
        self.server.shutdown()


def summary(values):
    """(median, min, max, n) of the figures of repeated runs."""
    return statistics.median(values), min(values), max(values), len(values)


def timed(fn):
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def run_quiet(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, **kwargs)


__all__ = ["Cluster", "Controller", "CountingProxy", "Moto", "Process", "stop_all", "summary", "timed",
           "run_quiet", "wait_for", "free_port"]
