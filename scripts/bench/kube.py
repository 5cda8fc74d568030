"""A small Kubernetes API client (stdlib only) for the benchmarks.

It reads the cluster and credentials from a kubeconfig through `kubectl config view`, so any
kubeconfig kubectl understands works: a bearer token or client certificate is used directly; any
other kind of credentials (exec plugins, auth providers) goes through `kubectl proxy`.
"""

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse

# (group/version, plural, namespaced) of every kind the benchmarks touch.
KINDS = {
    "Namespace": ("v1", "namespaces", False),
    "Secret": ("v1", "secrets", True),
    "ConfigMap": ("v1", "configmaps", True),
    "Service": ("v1", "services", True),
    "Deployment": ("apps/v1", "deployments", True),
    "SealedSecret": ("sigil.dev/v1alpha1", "sealedsecrets", True),
    "ExternalSecret": ("sigil.dev/v1alpha1", "externalsecrets", True),
    "SecretStore": ("sigil.dev/v1alpha1", "secretstores", True),
    "GitSource": ("sigil.dev/v1alpha1", "gitsources", True),
    "Sync": ("sigil.dev/v1alpha1", "syncs", True),
}


class ApiError(Exception):
    pass


def path(kind, namespace=None, name=None, query=None):
    group_version, plural, namespaced = KINDS[kind]
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    if namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if query:
        base += "?" + urllib.parse.urlencode(query)
    return base


class Kube:
    def __init__(self, kubeconfig, kubectl, workdir):
        self.kubeconfig = kubeconfig
        self.proxy = None
        view = subprocess.run(
            [kubectl, "config", "view", "--raw", "--minify", "-o", "json", "--kubeconfig", kubeconfig],
            check=True, capture_output=True, text=True,
        )
        config = json.loads(view.stdout)
        cluster = config["clusters"][0]["cluster"]
        user = (config.get("users") or [{}])[0].get("user") or {}
        self.headers = {}
        context = ssl.create_default_context()
        if cluster.get("certificate-authority-data"):
            context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            context.load_verify_locations(cafile=cluster["certificate-authority"])
        if cluster.get("insecure-skip-tls-verify"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        direct = True
        if user.get("token"):
            self.headers["Authorization"] = "Bearer " + user["token"]
        elif user.get("client-certificate-data") or user.get("client-certificate"):
            cert, key = user.get("client-certificate"), user.get("client-key")
            if user.get("client-certificate-data"):
                cert = _write(workdir, "client.crt", base64.b64decode(user["client-certificate-data"]))
                key = _write(workdir, "client.key", base64.b64decode(user["client-key-data"]))
            context.load_cert_chain(cert, key)
        else:
            direct = False
        if direct:
            server = urllib.parse.urlparse(cluster["server"])
            self.scheme, self.host, self.port = server.scheme, server.hostname, server.port or 443
            self.prefix = server.path.rstrip("/")
            self.context = context
        else:
            port = free_port()
            self.proxy = subprocess.Popen(
                [kubectl, "proxy", "--kubeconfig", kubeconfig, f"--port={port}", "--address=127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.scheme, self.host, self.port, self.prefix, self.context = "http", "127.0.0.1", port, "", None
            wait_for("kubectl proxy", 30, lambda: self.try_get("/version"))
        self.local = threading.local()

    def close(self):
        if self.proxy:
            self.proxy.terminate()
            self.proxy.wait(10)

    def _connection(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=120)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            self.local.conn = conn
        return conn

    def request(self, method, url, body=None, content_type="application/json", ok=(200, 201), raw=False):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(3):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + url, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2)
        if response.status not in ok:
            raise ApiError(f"{method} {url}: {response.status} {payload[:300].decode(errors='replace')}")
        if raw:
            return response.status, payload
        return response.status, (json.loads(payload) if payload else None)

    def try_get(self, url):
        try:
            self.request("GET", url)
            return True
        except (ApiError, OSError, http.client.HTTPException):
            return False

    def get(self, kind, namespace, name):
        return self.request("GET", path(kind, namespace, name))[1]

    def get_or_none(self, kind, namespace, name):
        status, body = self.request("GET", path(kind, namespace, name), ok=(200, 404))
        return body if status == 200 else None

    def list(self, kind, namespace=None, **query):
        return self.request("GET", path(kind, namespace, query=query or None))[1]["items"]

    def count(self, kind, namespace=None):
        """How many objects there are, from a one-item page and its remainingItemCount: waiting on a
        count must not cost the server a full list each time."""
        body = self.request("GET", path(kind, namespace, query={"limit": "1"}))[1]
        return len(body["items"]) + int(body["metadata"].get("remainingItemCount") or 0)

    def create(self, obj):
        kind, meta = obj["kind"], obj["metadata"]
        return self.request("POST", path(kind, meta.get("namespace")), obj)[1]

    def ensure(self, obj):
        kind, meta = obj["kind"], obj["metadata"]
        self.request("POST", path(kind, meta.get("namespace")), obj, ok=(200, 201, 409))

    def merge_patch(self, kind, namespace, name, patch):
        return self.request("PATCH", path(kind, namespace, name), patch, "application/merge-patch+json")[1]

    def apply(self, obj, manager="bench"):
        kind, meta = obj["kind"], obj["metadata"]
        url = path(kind, meta.get("namespace"), meta["name"], {"fieldManager": manager, "force": "true"})
        return self.request("PATCH", url, obj, "application/apply-patch+yaml")[1]

    def namespace(self, name):
        self.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _write(workdir, name, data):
    file = os.path.join(workdir, name)
    with open(file, "wb") as out:
        out.write(data)
    os.chmod(file, 0o600)
    return file


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what, within, check, every=0.05):
    """Calls `check` until it returns something truthy; raises after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within}s waiting for {what}")
        time.sleep(every)
